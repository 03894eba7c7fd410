# Broken on purpose: a copy of the example's catalog wiring that drops one
# catalog rule (memory-all-events) and adds a rule the catalog does not have.
locals {
  rules_dir = "${path.module}/../../../../events/rules"
  catalog   = [for f in sort(fileset(local.rules_dir, "*.json")) : jsondecode(file("${local.rules_dir}/${f}"))]
  queues = {
    for q in distinct([for r in local.catalog : r.target.queue]) : q => [for r in local.catalog : r if r.target.queue == q]
  }
}

module "subscriber" {
  source   = "../../../../terraform/modules/subscriber"
  for_each = local.queues

  name           = each.key
  event_bus_name = "agentbus"
  rules = merge({
    for r in each.value : r.name => {
      description   = r.description
      event_pattern = jsonencode(r.eventPattern)
    } if r.name != "memory-all-events"
  }, { "extra-${each.key}" = { event_pattern = jsonencode({ source = ["x"] }) } })
  max_receive_count          = try(each.value[0].target.maxReceiveCount, 5)
  visibility_timeout_seconds = try(each.value[0].target.visibilityTimeoutSeconds, 30)
}
