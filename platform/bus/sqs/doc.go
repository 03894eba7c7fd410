// Package sqs is the consumer side of the agentbus bus on AWS: a Queue
// (bus.Queue and bus.DLQ) over one SQS queue that an EventBridge rule
// delivers to, and the provisioning of such a queue with its dead-letter
// queue, redrive policy and queue policy.
//
// Receive long-polls (WaitTimeSeconds), takes up to 10 messages per call and
// unwraps the EventBridge envelope into the CloudEvent (events.FromDelivery);
// a body that cannot be decoded is returned with Message.DecodeErr set, never
// dropped, so the worker can dead-letter it with the reason. Ack deletes in
// batches and retries entries SQS failed on its side. Nack and Extend change
// the message's visibility. Transient failures are left to the queue's
// redrive policy (after maxReceiveCount receives SQS moves the message to the
// DLQ; SQS records no reason, so the worker logs it with the message id).
// DeadLetter sends a message that can never succeed to the DLQ itself, with
// the reason as the message attribute AttrReason, then deletes it.
//
// Queue names: a catalog queue q under prefix p is the SQS queue "p-q" with
// DLQ "p-q-dlq" (QueueName, DLQName); Terraform uses the same names.
package sqs
