output "name" {
  description = "Name the saga's state machine will have (placeholder: nothing is created yet)."
  value       = "${var.name_prefix}-saga-${var.name}"
}
