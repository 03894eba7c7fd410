// Package deploy checks the deployment artefacts that no tool can check on a
// machine without Terraform, its AWS provider or Docker: the Terraform
// modules under terraform/ (formatting as `terraform fmt` leaves it, parsing,
// references as strict as `terraform validate` for our own files, every
// catalog rule deployed, every queue with a DLQ, IAM actions named rather than
// "*", each service's task role equal to the union of its adapters' declared
// actions) and docker-compose.yml (structure and the environment contract of
// `agentbus serve`).
//
// It also generates terraform/modules/service/iam_actions.auto.tf.json from
// the IAMActions lists the AWS adapters declare in Go (go generate ./deploy),
// so no IAM action list is ever copied by hand.
package deploy
