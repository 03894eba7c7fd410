# PLACEHOLDER (see variables.tf): no resources until the saga issue lands.
