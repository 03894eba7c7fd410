package events

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// eventDoc builds the JSON document that ValidateJSON would decode from
// json.Marshal(ev) — the same map, the same json.Number values — without
// encoding the whole event and parsing it back: only data is parsed. A
// publisher validates every event once, and the encode/decode round trip
// measured about a third of that. ok is false for anything but the common
// shape (CloudEvents 1.0, JSON data or none, string/bool/integer
// extensions that do not shadow an attribute); the caller then takes the
// round trip, so such events are checked exactly as before. A differential
// test holds the two paths equal.
func eventDoc(ev *event.Event) (map[string]any, bool) {
	ec, ok := ev.Context.(*event.EventContextV1)
	if !ok || ec == nil {
		return nil, false
	}
	doc := make(map[string]any, 8+len(ec.Extensions))
	doc["specversion"] = event.CloudEventsVersionV1
	doc["id"] = ec.ID
	doc["source"] = ec.Source.String()
	doc["type"] = ec.Type
	if ec.Subject != nil {
		doc["subject"] = *ec.Subject
	}
	if ec.DataContentType != nil {
		doc["datacontenttype"] = *ec.DataContentType
	}
	if ec.DataSchema != nil {
		doc["dataschema"] = ec.DataSchema.String()
	}
	if ec.Time != nil {
		doc["time"] = ec.Time.String()
	}
	if ev.DataEncoded != nil {
		if ev.DataBase64 || !jsonMediaType(ec.DataContentType) {
			return nil, false
		}
		data, err := jsonschema.UnmarshalJSON(bytes.NewReader(ev.DataEncoded))
		if err != nil {
			return nil, false // the round trip reports it as before
		}
		doc["data"] = data
	}
	for k, v := range ec.Extensions {
		if _, taken := doc[k]; taken || k == "data_base64" {
			return nil, false
		}
		switch v := v.(type) {
		case string:
			doc[k] = v
		case bool:
			doc[k] = v
		case int32:
			doc[k] = json.Number(strconv.FormatInt(int64(v), 10))
		default:
			return nil, false
		}
	}
	return doc, true
}

// jsonMediaType: whether the SDK writes data with this content type as
// JSON (not as a string): "application/json" or none, as New sets it.
func jsonMediaType(ct *string) bool {
	if ct == nil {
		return true
	}
	mt, _, _ := strings.Cut(*ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}
