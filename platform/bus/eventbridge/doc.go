// Package eventbridge publishes agentbus CloudEvents to an Amazon EventBridge
// bus (the AWS side of bus.Publisher) and provisions the bus and its rules.
//
// Each CloudEvent becomes one PutEvents entry: Source = ce.source,
// DetailType = ce.type, Detail = the whole structured CloudEvent JSON (see
// events.ToEnvelope), so rules match extensions such as sessionid and toolname
// as top-level fields of "detail". Rules deliver to SQS queues; the consumer
// side is platform/bus/sqs.
//
// Publisher batches entries (at most 10 per call and at most the request size
// limit), retries throttling, 5xx and transport errors, and, when PutEvents
// reports FailedEntryCount > 0 with a nil error, retries only the failed
// entries, with exponential backoff and full jitter, a bounded number of
// times. What finally fails is returned as a *bus.PublishError naming each
// event and its cause. An event over the size limit fails alone with
// bus.ErrTooLarge and is never sent; the claim-check wrapper that offloads
// large payloads to a blob store sits in front of this publisher.
package eventbridge
