// Package events is the agentbus event contract: the CloudEvents type and
// source strings, the Go types of every data payload, constructors and
// decoders built on github.com/cloudevents/sdk-go/v2 (structured JSON mode),
// a JSON Schema per event type, and the SDK-free EventBridge envelope.
//
// It imports nothing of platform/ or services/ and no AWS SDK: every other
// package depends on it, never the other way round.
package events
