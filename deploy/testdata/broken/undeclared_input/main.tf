# Broken on purpose: queue_name is not an input of the subscriber module, and
# the required event_bus_name is missing.
module "orders" {
  source = "../../../../terraform/modules/subscriber"

  name       = "orders"
  queue_name = "orders"
}
