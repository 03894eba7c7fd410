# Broken on purpose: a wildcard action, a non-allow-listed action on "*",
# and an inline JSON policy that would bypass the policy-document checks.
data "aws_iam_policy_document" "wide" {
  statement {
    actions   = ["sqs:*"]
    resources = ["arn:aws:sqs:us-east-1:123456789012:orders"]
  }

  statement {
    actions   = ["s3:GetObject"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "inline" {
  role = "orders"
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "s3:GetObject", Resource = "*" }]
  })
}
