package plugin_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/blob/localfs"
	"github.com/agentbus/agentbus/platform/bus"
	"github.com/agentbus/agentbus/platform/bus/claimcheck"
	"github.com/agentbus/agentbus/platform/bus/local"
	"github.com/agentbus/agentbus/platform/state/sqlite"
	"github.com/agentbus/agentbus/plugin"
	"github.com/agentbus/agentbus/tools"
)

// echo is a test tool that counts its runs.
type echo struct {
	name string
	runs atomic.Int32
}

func (e *echo) Spec() tools.Spec {
	return tools.Spec{Name: e.name, Description: "echoes its input", Idempotent: false, Timeout: time.Second,
		InputSchema: json.RawMessage(`{"type":"object","properties":{"say":{"type":"string"}},"required":["say"]}`)}
}

func (e *echo) Run(_ context.Context, c tools.Call) (json.RawMessage, error) {
	e.runs.Add(1)
	return c.Input, nil
}

// collector records published events.
type collector struct {
	mu  sync.Mutex
	evs []event.Event
}

func (c *collector) Publish(_ context.Context, evs ...event.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evs = append(c.evs, evs...)
	return nil
}

func (c *collector) results() []event.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]event.Event(nil), c.evs...)
}

type specRecorder struct {
	mu     sync.Mutex
	plugin string
	specs  []tools.Spec
}

func (r *specRecorder) RegisterTools(_ context.Context, plugin string, specs []tools.Spec) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.plugin, r.specs = plugin, specs
	return nil
}

func request(t *testing.T, sid, tool, callID, input string) event.Event {
	t.Helper()
	ev, err := events.NewPayload(events.SourceExecutor, sid, events.ToolInvocationRequested{
		Step: 1, CallID: callID, Tool: tool, Input: json.RawMessage(input), IdempotencyKey: tools.IdempotencyKey(sid, 1, callID)})
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestServe: requests for the plug-in's tool are answered once each
// (a redelivered request is answered from the claim ledger, with the same
// event id); requests for other tools are left alone; specs are
// registered under the plug-in's name.
func TestServe(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q, err := local.Open(ctx, local.Options{Queues: []local.QueueConfig{{Name: "plugin-echo", Visibility: 5 * time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	store, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tool := &echo{name: "echo"}
	pub := &collector{}
	reg := &specRecorder{}
	var (
		mu   sync.Mutex
		seen []string
	)
	done := make(chan error, 1)
	go func() {
		done <- plugin.Serve(ctx, plugin.Config{
			Name: "echoer", Tools: []tools.Tool{tool}, Store: store,
			Transport: plugin.Transport{Queue: q.Queue("plugin-echo"), Publisher: pub, Registrar: reg, Visibility: 5 * time.Second},
			OnRequest: func(tool, callID string) { mu.Lock(); seen = append(seen, tool+"/"+callID); mu.Unlock() },
		})
	}()
	req := request(t, "s-1", "echo", "c1", `{"say":"hi"}`)
	body, _ := json.Marshal(req)
	other, _ := json.Marshal(request(t, "s-1", "not_mine", "c2", `{}`))
	deadline := time.Now().Add(10 * time.Second)
	waitFor := func(n int) {
		for len(pub.results()) < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := q.SendRaw(ctx, "plugin-echo", body); err != nil {
		t.Fatal(err)
	}
	waitFor(1)
	// The same request again (a redelivery after the call finished), and a
	// request for another tool.
	for _, b := range [][]byte{body, other} {
		if err := q.SendRaw(ctx, "plugin-echo", b); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(2)
	for time.Now().Before(deadline) {
		st, _ := q.Stats(ctx, "plugin-echo")
		if st.Ready+st.InFlight+st.Delayed == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if n := tool.runs.Load(); n != 1 {
		t.Errorf("tool ran %d times; want 1", n)
	}
	res := pub.results()
	if len(res) < 2 {
		t.Fatalf("published %d events; want the result and its re-publication", len(res))
	}
	for _, ev := range res {
		if ev.Type() != events.TypeToolInvocationCompleted || ev.Source() != plugin.SourcePrefix+"echoer" || ev.ID() != res[0].ID() {
			t.Errorf("published %s from %s id %s; want the one result of c1 from agentbus/plugin/echoer", ev.Type(), ev.Source(), ev.ID())
		}
		d, err := events.Decode[events.ToolInvocationCompleted](ev)
		if err != nil || string(d.Output) != `{"say":"hi"}` {
			t.Errorf("result %+v, %v", d, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || !strings.Contains(strings.Join(seen, ","), "not_mine/c2") {
		t.Errorf("OnRequest saw %v; want c1 twice and c2", seen)
	}
	if reg.plugin != "echoer" || len(reg.specs) != 1 || reg.specs[0].Name != "echo" {
		t.Errorf("registered %q %+v", reg.plugin, reg.specs)
	}
}

func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	b, err := local.Open(ctx, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	good := plugin.Transport{Queue: b.Queue("q"), Publisher: &collector{}}
	cases := []struct {
		name string
		cfg  plugin.Config
		want string
	}{
		{"bad name", plugin.Config{Name: "Bad Name", Tools: []tools.Tool{&echo{name: "e"}}, Transport: good, Store: store}, "name"},
		{"no tools", plugin.Config{Name: "p", Transport: good, Store: store}, "no tools"},
		{"no queue", plugin.Config{Name: "p", Tools: []tools.Tool{&echo{name: "e"}}, Transport: plugin.Transport{Publisher: &collector{}}, Store: store}, "no queue"},
		{"no publisher", plugin.Config{Name: "p", Tools: []tools.Tool{&echo{name: "e"}}, Transport: plugin.Transport{Queue: b.Queue("q")}, Store: store}, "no publisher"},
		{"no store", plugin.Config{Name: "p", Tools: []tools.Tool{&echo{name: "e"}}, Transport: good}, "no state store"},
		{"bad tool", plugin.Config{Name: "p", Tools: []tools.Tool{&echo{name: "has space"}}, Transport: good, Store: store}, "invalid tool spec"},
		{"tool twice", plugin.Config{Name: "p", Tools: []tools.Tool{&echo{name: "e"}, &echo{name: "e"}}, Transport: good, Store: store}, "already registered"},
	}
	for _, tc := range cases {
		err := plugin.Serve(ctx, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestStoreRegistrar(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := sqlite.OpenMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	r := plugin.StoreRegistrar{Specs: store, Reserved: []string{"reserved_one"}}
	for _, name := range []string{"calculator", "clock", "reserved_one"} {
		if err := r.RegisterTools(ctx, "p", []tools.Spec{(&echo{name: name}).Spec()}); !errors.Is(err, plugin.ErrToolClash) {
			t.Errorf("%s: %v; want ErrToolClash", name, err)
		}
	}
	if err := r.RegisterTools(ctx, "p", []tools.Spec{(&echo{name: "echo"}).Spec()}); err != nil {
		t.Fatal(err)
	}
	got, err := store.ListToolSpecs(ctx)
	if err != nil || len(got) != 1 || got[0].Name != "echo" || got[0].Plugin != "p" {
		t.Fatalf("stored %+v, %v; want echo only", got, err)
	}
	var sp tools.Spec
	if err := json.Unmarshal(got[0].Spec, &sp); err != nil || sp.Timeout != time.Second || sp.Name != "echo" {
		t.Errorf("stored spec decodes to %+v, %v", sp, err)
	}
}

var _ bus.Publisher = (*collector)(nil)

// TestServeResolvesClaimChecks: a request whose input was offloaded to the
// blob store reaches the tool whole when Resolve is set, and is
// dead-lettered (never run) without it.
func TestServeResolvesClaimChecks(t *testing.T) {
	t.Parallel()
	for _, withResolve := range []bool{true, false} {
		t.Run(map[bool]string{true: "resolve", false: "no resolve"}[withResolve], func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b, err := local.Open(ctx, local.Options{MaxEventSize: 4 << 20,
				Rules:  []local.Rule{{Name: "r", Pattern: json.RawMessage(`{"detail":{"toolname":["echo"]}}`), Queue: "plugin-echo"}},
				Queues: []local.QueueConfig{{Name: "plugin-echo", Visibility: 5 * time.Second, MaxReceiveCount: 1}}})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			blobs, err := localfs.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			checked, err := claimcheck.NewPublisher(b, blobs, claimcheck.WithLimit(claimcheck.MinLimit))
			if err != nil {
				t.Fatal(err)
			}
			resolver, err := claimcheck.NewResolver(blobs)
			if err != nil {
				t.Fatal(err)
			}
			store, err := sqlite.OpenMemory(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			tool := &echo{name: "echo"}
			pub := &collector{}
			cfg := plugin.Config{Name: "echoer", Tools: []tools.Tool{tool}, Store: store,
				Transport: plugin.Transport{Queue: b.Queue("plugin-echo"), Publisher: pub, Visibility: 5 * time.Second}}
			if withResolve {
				cfg.Resolve = resolver.Middleware
			}
			done := make(chan error, 1)
			go func() { done <- plugin.Serve(ctx, cfg) }()
			big := strings.Repeat("x", 2*claimcheck.MinLimit)
			if err := checked.Publish(ctx, request(t, "s-2", "echo", "c1", `{"say":"`+big+`"}`)); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				st, _ := b.Stats(ctx, "plugin-echo")
				if len(pub.results()) > 0 || st.Dead > 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			st, _ := b.Stats(context.Background(), "plugin-echo")
			if withResolve {
				res := pub.results()
				if len(res) == 0 {
					t.Fatal("no result")
				}
				d, err := events.Decode[events.ToolInvocationCompleted](res[0])
				if err != nil || len(d.Output) < 2*claimcheck.MinLimit {
					t.Errorf("result %d bytes, %v; want the whole input echoed", len(d.Output), err)
				}
				return
			}
			if tool.runs.Load() != 0 || st.Dead != 1 {
				t.Errorf("without Resolve: %d runs, %d dead; want 0 runs and the request dead-lettered", tool.runs.Load(), st.Dead)
			}
		})
	}
}
