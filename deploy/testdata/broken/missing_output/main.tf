# Broken on purpose: the subscriber module has no output queue_id.
module "orders" {
  source = "../../../../terraform/modules/subscriber"

  name           = "orders"
  event_bus_name = "agentbus"
}

output "queue" {
  description = "The queue."
  value       = module.orders.queue_id
}
