package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/agentbus/agentbus/events"
	"github.com/agentbus/agentbus/platform/bus/local"
	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/scripted"
	"github.com/agentbus/agentbus/services/planner"
)

// runFlags are the options of `agentbus run`.
type runFlags struct {
	agentFile  string
	scriptFile string
	dataDir    string
	jsonOut    bool
	verbose    bool
	api        apiFlags
	sagas      sagaFlags
}

// agentSpec is the --agent file's definition; nil without --agent. A bad
// file is a usage error.
func (f runFlags) agentSpec() (*events.AgentSpec, error) {
	if f.agentFile == "" {
		return nil, nil
	}
	s, err := planner.LoadAgentFile(f.agentFile)
	if err != nil {
		return nil, usageErr(err)
	}
	return &s, nil
}

// embedded is the embedded runtime's configuration for run and dev: the
// data folder with its added plug-in rules, and the sagas of --saga and
// --sagas-dir. Bad rule or saga files are usage errors.
func (f runFlags) embedded(m model.Model, log *slog.Logger) (embeddedConfig, error) {
	extra, err := dataDirRules(f.dataDir)
	if err != nil {
		return embeddedConfig{}, usageErr(err)
	}
	sagas, err := f.sagas.load()
	if err != nil {
		return embeddedConfig{}, usageErr(err)
	}
	return embeddedConfig{DataDir: f.dataDir, Model: m, Logger: log, ExtraRules: extra,
		Sagas: sagaConfig{Definitions: sagas}}, nil
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run <prompt>",
		Short: "Run one agent to completion on the embedded runtime and print its answer",
		Long: `run starts the planner, executor, memory and tool-gateway services in this
process (SQLite in the data folder, in-process cache, the scripted model unless
a Bedrock model is configured), publishes AgentRequested, streams each step and
tool call as the events arrive, and prints the answer. It exits 1 on AgentFailed
(printing the reason) and 130 when interrupted (the run is cancelled).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.api.addr != "" {
				for _, name := range []string{"script", "data-dir", "verbose", "saga", "sagas-dir"} {
					if cmd.Flags().Changed(name) {
						return usageErr(fmt.Errorf("--%s configures the in-process runtime; with --addr the dev server's own settings apply", name))
					}
				}
			}
			return runAgent(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], f)
		},
	}
	cmd.Flags().StringVar(&f.agentFile, "agent", "", "agent definition file (JSON: name, model, system, tools, limits)")
	cmd.Flags().StringVar(&f.scriptFile, "script", "", "script file for the offline scripted model (default: the built-in demo script)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", defaultDataDir(), "folder for the embedded bus, state and blobs ($AGENTBUS_DATA_DIR)")
	cmd.Flags().BoolVar(&f.jsonOut, "json", false, "print every event of the session as a JSON line instead of progress text")
	cmd.Flags().BoolVarP(&f.verbose, "verbose", "v", false, "log the services' activity to stderr")
	f.api.register(cmd.Flags())
	f.sagas.register(cmd.Flags())
	return cmd
}

// defaultDataDir is $AGENTBUS_DATA_DIR, else .agentbus in the working folder.
func defaultDataDir() string {
	if d := os.Getenv("AGENTBUS_DATA_DIR"); d != "" {
		return d
	}
	return ".agentbus"
}

// chooseModel returns the configured model: Bedrock when
// AGENTBUS_BEDROCK_MODEL_ID is set (see bedrockModel), else the scripted
// model with scriptFile or the built-in demo script.
func chooseModel(ctx context.Context, scriptFile string) (model.Model, string, error) {
	if id := os.Getenv("AGENTBUS_BEDROCK_MODEL_ID"); id != "" {
		m, err := bedrockModel(ctx, id)
		return m, "bedrock " + id, err
	}
	var (
		s   *scripted.Script
		err error
	)
	if scriptFile != "" {
		s, err = scripted.LoadFile(scriptFile)
	} else {
		s, err = scripted.Default()
	}
	if err != nil {
		return nil, "", usageErr(err)
	}
	name := "scripted (built-in demo script)"
	if scriptFile != "" {
		name = "scripted " + scriptFile
	}
	// Retried like Bedrock, so a scripted throttle behaves as the real one.
	return model.WithRetry(scripted.New(s), model.DefaultRetryPolicy), name, nil
}

func usageErr(err error) error { return &exitError{code: 2, err: err} }

func runAgent(ctx context.Context, stdout, stderr io.Writer, prompt string, f runFlags) error {
	if strings.TrimSpace(prompt) == "" {
		return usageErr(errors.New("the prompt is empty"))
	}
	spec, err := f.agentSpec()
	if err != nil {
		return err
	}
	if f.api.addr != "" {
		return runRemote(ctx, stdout, prompt, spec, f)
	}
	m, modelName, err := chooseModel(ctx, f.scriptFile)
	if err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	if f.verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg, err := f.embedded(m, log)
	if err != nil {
		return err
	}
	rt, err := startEmbedded(ctx, cfg)
	if err != nil {
		return err
	}
	defer rt.Close()

	if !f.jsonOut {
		fmt.Fprintf(stdout, "model %s · data %s\n", modelName, f.dataDir)
	}
	err = runOnce(ctx, rt, stdout, prompt, spec, f.jsonOut)
	rt.drain(ctx, 2*time.Second)
	return err
}

// runOnce submits one AgentRequested to a running embedded runtime and
// follows the session to its end.
func runOnce(ctx context.Context, rt *embedded, stdout io.Writer, prompt string, spec *events.AgentSpec, jsonOut bool) error {
	sid := uuid.NewString()
	sub, err := subscribeSession(ctx, rt.Bus, sid)
	if err != nil {
		return err
	}
	defer sub.close(context.WithoutCancel(ctx))

	req, err := events.NewPayload(events.SourceClient, sid, events.AgentRequested{Prompt: prompt, Agent: spec})
	if err != nil {
		return err
	}
	if err := rt.Publisher.Publish(ctx, req); err != nil {
		return usageErr(fmt.Errorf("request rejected: %w", err))
	}
	if !jsonOut {
		fmt.Fprintf(stdout, "session %s\n", sid)
	}
	out := &progress{w: stdout, json: jsonOut}
	return out.follow(ctx, sub, func(ctx context.Context) error {
		c, err := events.NewPayload(events.SourceClient, sid, events.AgentCancelRequested{Reason: "interrupted by the user"})
		if err != nil {
			return err
		}
		return rt.Publisher.Publish(ctx, c)
	})
}

// sessionSub is a caller's own queue fed by a rule that matches one
// session: how a client subscribes on the bus, like any other service.
type sessionSub struct {
	bus  *local.Bus
	name string
	q    *local.Queue
}

func subscribeSession(ctx context.Context, b *local.Bus, sid string) (*sessionSub, error) {
	name := "client-" + strings.ReplaceAll(sid, "-", "")[:16]
	pattern, err := json.Marshal(map[string]any{"detail": map[string]any{events.ExtSessionID: []string{sid}}})
	if err != nil {
		return nil, err
	}
	if err := b.DeclareQueue(ctx, local.QueueConfig{Name: name, Visibility: 30 * time.Second}); err != nil {
		return nil, err
	}
	if err := b.AddRule(local.Rule{Name: name, Pattern: pattern, Queue: name}); err != nil {
		return nil, err
	}
	return &sessionSub{bus: b, name: name, q: b.Queue(name)}, nil
}

func (s *sessionSub) close(ctx context.Context) {
	s.bus.RemoveRule(s.name)
	_, _ = s.bus.Purge(ctx, s.name)
}

// progress prints a session's events as they arrive.
type progress struct {
	w    io.Writer
	json bool
	seen map[string]bool
}

// follow prints events until the session ends. On ctx's end it asks for a
// cancel and waits (briefly) for AgentCancelled.
func (p *progress) follow(ctx context.Context, sub *sessionSub, cancel func(context.Context) error) error {
	p.seen = map[string]bool{}
	recvCtx := ctx
	var cancelDeadline <-chan time.Time
	for {
		select {
		case <-cancelDeadline:
			return &exitError{code: 130, err: errors.New("interrupted; the run did not confirm the cancel in time")}
		default:
		}
		if recvCtx.Err() != nil && cancelDeadline == nil {
			// Interrupted: ask the planner to cancel, then keep reading.
			bg := context.WithoutCancel(ctx)
			if err := cancel(bg); err != nil {
				return &exitError{code: 130, err: fmt.Errorf("interrupted; cancel failed: %w", err)}
			}
			cancelDeadline = time.After(5 * time.Second)
			recvCtx = bg
		}
		msgs, err := sub.q.Receive(recvCtx, 10, time.Second, 30*time.Second)
		if err != nil {
			if recvCtx.Err() != nil {
				continue
			}
			return err
		}
		for _, m := range msgs {
			_ = sub.q.Ack(context.WithoutCancel(ctx), m.Receipt)
			if m.DecodeErr != nil || p.seen[m.Event.Source()+" "+m.Event.ID()] {
				continue
			}
			p.seen[m.Event.Source()+" "+m.Event.ID()] = true
			if done, err := p.print(m.Event); done {
				return err
			}
		}
	}
}

// print writes one event; done reports a terminal event, with the error
// that sets the exit code.
func (p *progress) print(ev event.Event) (done bool, err error) {
	if p.json {
		b, _ := json.Marshal(ev)
		fmt.Fprintln(p.w, string(b))
	}
	switch ev.Type() {
	case events.TypeStepPlanned:
		d, _ := events.Decode[events.StepPlanned](ev)
		if !p.json {
			if d.Text != "" {
				fmt.Fprintf(p.w, "· %s\n", d.Text)
			}
			for _, c := range d.Calls {
				fmt.Fprintf(p.w, "step %d · call %s %s %s\n", d.Step, c.ID, c.Name, compact(c.Input))
			}
		}
	case events.TypeStepCompleted:
		d, _ := events.Decode[events.StepCompleted](ev)
		if !p.json {
			for _, r := range d.Results {
				if r.OK {
					fmt.Fprintf(p.w, "step %d · %s %s → %s\n", d.Step, r.CallID, r.Tool, compact(r.Output))
				} else {
					fmt.Fprintf(p.w, "step %d · %s %s failed: %s: %s\n", d.Step, r.CallID, r.Tool, r.Reason, r.Message)
				}
			}
		}
	case events.TypeSagaStarted, events.TypeSagaCompleted, events.TypeSagaCompensated, events.TypeSagaCompensationFailed:
		if !p.json {
			printSaga(p.w, ev)
		}
	case events.TypeAgentCompleted:
		d, _ := events.Decode[events.AgentCompleted](ev)
		if !p.json {
			fmt.Fprintf(p.w, "answer: %s\n", d.Answer)
			fmt.Fprintf(p.w, "(%d steps, %d input + %d output tokens)\n", d.Steps, d.Usage.InputTokens, d.Usage.OutputTokens)
		}
		return true, nil
	case events.TypeAgentFailed:
		d, _ := events.Decode[events.AgentFailed](ev)
		return true, fmt.Errorf("agent failed: %s: %s", d.Reason, d.Message)
	case events.TypeAgentCancelled:
		d, _ := events.Decode[events.AgentCancelled](ev)
		return true, &exitError{code: 130, err: fmt.Errorf("agent cancelled: %s", d.Reason)}
	}
	return false, nil
}

// compact shortens a JSON value for one progress line.
func compact(raw json.RawMessage) string {
	s := strings.TrimSpace(string(raw))
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}
