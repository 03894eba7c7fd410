package local_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus/local"
)

// TestReceivedEventEqualsPublished checks the round trip through the stored
// envelope: attributes, extension values and their Go types, and data come
// out as they went in.
func TestReceivedEventEqualsPublished(t *testing.T) {
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
	if m.DecodeErr != nil {
		t.Fatal(m.DecodeErr)
	}
	got, want := m.Event, ev
	if got.ID() != want.ID() || got.Source() != want.Source() || got.Type() != want.Type() ||
		got.Subject() != want.Subject() || !got.Time().Equal(want.Time()) || got.DataContentType() != want.DataContentType() {
		t.Errorf("attributes differ:\n received  %s\n published %s", got, want)
	}
	if !reflect.DeepEqual(got.Extensions(), want.Extensions()) {
		t.Errorf("extensions differ: received %s, published %s", fmt.Sprintf("%#v", got.Extensions()), fmt.Sprintf("%#v", want.Extensions()))
	}
	if string(got.Data()) != string(want.Data()) {
		t.Errorf("data differs: %s vs %s", got.Data(), want.Data())
	}
}
