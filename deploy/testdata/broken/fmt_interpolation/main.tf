variable "name" {
  description = "A name."
  type        = "string"
}

resource "aws_sqs_queue" "q" {
  name = "${var.name}"
}
