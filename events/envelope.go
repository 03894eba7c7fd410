package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// ErrInvalidEnvelope reports a delivery body that is neither an EventBridge
// envelope carrying a CloudEvent nor a bare structured CloudEvent.
var ErrInvalidEnvelope = errors.New("events: invalid delivery envelope")

// Envelope is the SDK-free form of one EventBridge PutEvents entry. The AWS
// adapter copies it into a PutEventsRequestEntry; the embedded bus wraps it
// with EnvelopeJSON so rule patterns see the same document in both modes.
type Envelope struct {
	// Source is the CloudEvent source (EventBridge "source").
	Source string
	// DetailType is the CloudEvent type (EventBridge "detail-type").
	DetailType string
	// Detail is the whole CloudEvent in structured JSON mode.
	Detail json.RawMessage
}

// ToEnvelope maps a CloudEvent onto an EventBridge entry: Source=ce.source,
// DetailType=ce.type, Detail=the whole CloudEvent JSON (so extensions such as
// sessionid and toolname are top-level fields of detail, where rules match).
func ToEnvelope(ev event.Event) (Envelope, error) {
	if err := ev.Validate(); err != nil {
		return Envelope{}, fmt.Errorf("events: to envelope: %w", err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return Envelope{}, fmt.Errorf("events: to envelope: marshal %s: %w", ev.Type(), err)
	}
	return Envelope{Source: ev.Source(), DetailType: ev.Type(), Detail: b}, nil
}

// deliveryEnvelope is the JSON EventBridge hands to a rule and to an SQS
// target. Field order follows what EventBridge emits.
type deliveryEnvelope struct {
	Version    string          `json:"version"`
	ID         string          `json:"id"`
	DetailType string          `json:"detail-type"`
	Source     string          `json:"source"`
	Account    string          `json:"account"`
	Time       string          `json:"time"`
	Region     string          `json:"region"`
	Resources  []string        `json:"resources"`
	Detail     json.RawMessage `json:"detail"`
}

// EnvelopeJSON renders the document an EventBridge rule matches and an SQS
// target receives for env. id is the EventBridge event id (not the CloudEvent
// id); t is rendered in UTC with second precision as EventBridge does.
func EnvelopeJSON(env Envelope, id string, t time.Time, account, region string) []byte {
	detail := env.Detail
	if len(bytes.TrimSpace(detail)) == 0 {
		detail = json.RawMessage("{}")
	}
	b, err := json.Marshal(deliveryEnvelope{
		Version:    "0",
		ID:         id,
		DetailType: env.DetailType,
		Source:     env.Source,
		Account:    account,
		Time:       t.UTC().Format("2006-01-02T15:04:05Z"),
		Region:     region,
		Resources:  []string{},
		Detail:     detail,
	})
	if err != nil {
		// Only an invalid Detail can fail here; keep the envelope usable and
		// let the consumer's decode report the broken detail.
		b, _ = json.Marshal(deliveryEnvelope{
			Version: "0", ID: id, DetailType: env.DetailType, Source: env.Source,
			Account: account, Time: t.UTC().Format("2006-01-02T15:04:05Z"), Region: region,
			Resources: []string{}, Detail: json.RawMessage("{}"),
		})
	}
	return b
}

// FromDelivery turns an SQS message body into the CloudEvent it carries. The
// body is either an EventBridge envelope (the CloudEvent is its detail) or a
// bare structured CloudEvent (what a test or a direct SQS send may deliver).
func FromDelivery(body []byte) (event.Event, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(body, &probe); err != nil {
		return event.Event{}, fmt.Errorf("%w: body is not a JSON object: %v", ErrInvalidEnvelope, err)
	}
	ceJSON := body
	if detail, ok := probe["detail"]; ok {
		if _, isEnvelope := probe["detail-type"]; !isEnvelope {
			return event.Event{}, fmt.Errorf("%w: has \"detail\" but no \"detail-type\"", ErrInvalidEnvelope)
		}
		ceJSON = detail
	} else if _, ok := probe["specversion"]; !ok {
		return event.Event{}, fmt.Errorf("%w: neither an EventBridge envelope (detail-type, detail) nor a CloudEvent (specversion)", ErrInvalidEnvelope)
	}
	var ev event.Event
	if err := json.Unmarshal(ceJSON, &ev); err != nil {
		return event.Event{}, fmt.Errorf("%w: decode CloudEvent: %v", ErrInvalidEnvelope, err)
	}
	if err := ev.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("%w: %v", ErrInvalidEnvelope, err)
	}
	return ev, nil
}
