package local_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus/local"
)

// TestInProcessEventEqualsDecoded checks that the copy an in-process receiver
// gets equals what decoding the stored envelope gives (what a receiver gets
// after a restart, or from SQS): attributes, extension values and types, data.
func TestInProcessEventEqualsDecoded(t *testing.T) {
	t.Parallel()
	b := open(t, local.Options{Rules: []local.Rule{rule("r", "t", "q")}})
	ev := newEv("1", "t")
	ev.SetTime(time.Date(2026, 11, 25, 15, 0, 0, 123456789, time.UTC))
	ev.SetSubject("subj")
	ev.SetExtension("step", 3)
	ev.SetExtension("toolname", "calc")
	ev.SetExtension("flag", true)
	if err := ev.SetData(event.ApplicationJSON, map[string]any{"a": []int{1, 2}, "b": "x"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	m := receive1(t, b.Queue("q"))
	dec, err := events.FromDelivery(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, want := m.Event, dec
	if got.ID() != want.ID() || got.Source() != want.Source() || got.Type() != want.Type() ||
		got.Subject() != want.Subject() || !got.Time().Equal(want.Time()) || got.DataContentType() != want.DataContentType() {
		t.Errorf("attributes differ:\n in-process %s\n decoded    %s", got, want)
	}
	if !reflect.DeepEqual(got.Extensions(), want.Extensions()) {
		t.Errorf("extensions differ: in-process %s, decoded %s", fmt.Sprintf("%#v", got.Extensions()), fmt.Sprintf("%#v", want.Extensions()))
	}
	if string(got.Data()) != string(want.Data()) {
		t.Errorf("data differs: %s vs %s", got.Data(), want.Data())
	}
}
