# 6.6 added log_config on aws_cloudwatch_event_bus (bus logging of failed
# invocations); the other modules need 6.0 (data.aws_region.region).
terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.6"
    }
  }
}
