resource "aws_sqs_queue" "q" {
  name = "a"
  visibility_timeout_seconds   = 30
}
