package local_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/agentbus/agentbus/platform/bus/local"
)

const crashEnv = "AGENTBUS_LOCALBUS_CRASH_DB"

func crashOptions(path string) local.Options {
	return local.Options{
		Path:   path,
		Rules:  []local.Rule{{Name: "all", Pattern: []byte(`{"source":["crash"]}`), Queue: "q"}},
		Queues: []local.QueueConfig{{Name: "q", Visibility: time.Minute}},
		// Compact the journal often, so that kills land in and around
		// compactions too.
		CompactAt: 16 << 10,
	}
}

// TestCrashChild is the process that gets killed; it runs only when
// TestKillNoLoss starts it. It publishes and consumes as fast as it can and
// prints what the bus acknowledged: "P id" after Publish returned, "R id"
// after a receive, "A id" after its Ack returned, "N id" for a message it
// will never ack.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestKillNoLoss")
	}
	ctx := context.Background()
	b, err := local.Open(ctx, crashOptions(path))
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	// Each line is written straight to the pipe before the bus is asked for
	// the next step, so a line the kill cut off never names something that
	// already happened: e.g. an "R" reaches the parent before its Ack runs.
	var mu sync.Mutex
	say := func(line string) {
		mu.Lock()
		defer mu.Unlock()
		os.Stdout.WriteString(line + "\n")
	}
	prefix := fmt.Sprint(time.Now().UnixNano())
	for p := range 4 {
		go func() {
			for i := 0; ; i++ {
				ev := event.New()
				ev.SetID(fmt.Sprintf("%s-%d-%d", prefix, p, i))
				ev.SetSource("crash")
				ev.SetType("crash.test.v1")
				if err := b.Publish(ctx, ev); err != nil {
					say("ERR " + err.Error())
					return
				}
				say("P " + ev.ID())
			}
		}()
	}
	go func() {
		for range time.Tick(20 * time.Millisecond) {
			say(fmt.Sprint("C ", b.EngineStats().Compactions))
		}
	}()
	q := b.Queue("q")
	for {
		msgs, err := q.Receive(ctx, 16, time.Second, time.Minute)
		if err != nil {
			say("ERR " + err.Error())
			select {}
		}
		var rs []string
		for _, m := range msgs {
			say("R " + m.Event.ID())
			rs = append(rs, m.Receipt)
		}
		// Leave every third batch unacknowledged: it must come back.
		if len(msgs) > 0 && msgs[0].ID[len(msgs[0].ID)-1]%3 == 0 {
			for _, m := range msgs {
				say("N " + m.Event.ID())
			}
			continue
		}
		if err := q.Ack(ctx, rs...); err != nil {
			say("ERR " + err.Error())
			continue
		}
		for _, m := range msgs {
			say("A " + m.Event.ID())
		}
	}
}

// TestKillNoLoss SIGKILLs a busy bus process at arbitrary points and checks,
// after reopening the file, that no acknowledged publish was lost, no acked
// message came back, and every unacknowledged message is redelivered.
func TestKillNoLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("kills subprocesses; skipped in -short")
	}
	t.Parallel()
	path := filepath.Join(t.TempDir(), "crash.db")
	published, acked, received, unacked := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	compactions := map[int]int{}
	for round, after := range []time.Duration{150 * time.Millisecond, 400 * time.Millisecond, 50 * time.Millisecond, 700 * time.Millisecond} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1<<16)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait for the child to get going, then kill it mid-flight.
		first := <-lines
		time.Sleep(after)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		n := 0
		all := []string{first}
		for line := range lines {
			all = append(all, line)
		}
		for _, line := range all {
			kind, id, _ := strings.Cut(line, " ")
			switch kind {
			case "P":
				published[id] = true
				n++
			case "A":
				acked[id] = true
				delete(unacked, id)
			case "N":
				unacked[id] = true
			case "R":
				received[id] = true
				// Received again after a restart: whether this delivery's
				// ack committed before the kill is unknown unless an "A" or
				// a new "N" line follows, so it is no longer known unacked.
				delete(unacked, id)
			case "C":
				if c, _ := strconv.Atoi(id); c > compactions[round] {
					compactions[round] = c
				}
			case "ERR":
				t.Errorf("round %d: child error: %s", round, id)
			}
		}
		_ = cmd.Wait()
		t.Logf("round %d: killed after %s; %d publishes acknowledged, %d journal compactions", round, after, n, compactions[round])
	}

	total := 0
	for _, c := range compactions {
		total += c
	}
	if total == 0 {
		t.Error("no journal compaction ran in the killed processes: the kills did not cover them")
	}
	b, err := local.Open(context.Background(), crashOptions(path))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer b.Close()
	left := map[string]int{}
	q := b.Queue("q")
	for {
		msgs, err := q.Receive(context.Background(), 1000, 0, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			if m.DecodeErr != nil {
				t.Fatalf("message %s does not decode: %v", m.ID, m.DecodeErr)
			}
			left[m.Event.ID()]++
			if received[m.Event.ID()] && m.ReceiveCount < 2 {
				t.Errorf("event %s was received before the crash but has ReceiveCount %d", m.Event.ID(), m.ReceiveCount)
			}
		}
	}
	lost := 0
	for id := range published {
		// An event whose receive was printed may have been acked by a
		// commit that the kill beat the "A" line to.
		if left[id] == 0 && !acked[id] && !received[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged publishes lost", lost)
	}
	for id := range acked {
		if left[id] > 0 {
			t.Errorf("acked event %s came back", id)
		}
	}
	for id := range unacked {
		if left[id] == 0 {
			t.Errorf("unacknowledged event %s was not redelivered", id)
		}
	}
	for id, n := range left {
		if n > 1 {
			t.Errorf("event %s queued %d times", id, n)
		}
	}
	if len(published) == 0 || len(acked) == 0 {
		t.Fatalf("child did no work: %d published, %d acked", len(published), len(acked))
	}
	t.Logf("%d published, %d acked, %d still queued after 4 kills", len(published), len(acked), len(left))
}
