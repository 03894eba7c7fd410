package stepfunctions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/agentbus/agentbus/platform/bus"
	busqs "github.com/agentbus/agentbus/platform/bus/sqs"
	"github.com/agentbus/agentbus/platform/saga"
	def "github.com/agentbus/agentbus/saga"
)

// TaskAPI is the Step Functions calls a Worker makes to answer tasks; an
// *sfn.Client satisfies it.
type TaskAPI interface {
	SendTaskSuccess(ctx context.Context, in *sfn.SendTaskSuccessInput, optFns ...func(*sfn.Options)) (*sfn.SendTaskSuccessOutput, error)
	SendTaskFailure(ctx context.Context, in *sfn.SendTaskFailureInput, optFns ...func(*sfn.Options)) (*sfn.SendTaskFailureOutput, error)
	SendTaskHeartbeat(ctx context.Context, in *sfn.SendTaskHeartbeatInput, optFns ...func(*sfn.Options)) (*sfn.SendTaskHeartbeatOutput, error)
}

// QueueAPI is the SQS calls a Worker makes on the saga queue and its DLQ;
// an *sqs.Client satisfies it.
type QueueAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// WorkerIAMActions lists the IAM actions a Worker calls: the task answers
// (on the state machines' executions' tokens) and, on the saga queue and
// its DLQ, the SQS calls of QueueAPI.
var WorkerIAMActions = []string{
	"states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat",
	"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage",
}

// Step Functions' limits on a task answer (characters; we count bytes,
// which is never fewer).
const (
	maxErrorLen  = 256
	maxCauseLen  = 32768
	maxOutputLen = 256 * 1024
	maxWait      = 20 * time.Second
	maxVisSec    = 12 * 60 * 60
	maxReasonLen = 1024
)

// ErrorInvalidOutput is the task failure a Worker reports when a tool's
// output cannot be a task result: not JSON, or over Step Functions' 256 KiB
// task output limit. Like a timeout it is not retried (the tool had its
// effect) and starts compensation.
const ErrorInvalidOutput = "agentbus.InvalidOutput"

// WorkerConfig configures a Worker. SFN, SQS, QueueURL and Invoker are
// required; zero values of the rest give the defaults noted.
type WorkerConfig struct {
	SFN      TaskAPI
	SQS      QueueAPI
	QueueURL string
	// DLQURL receives malformed task messages, with the reason in the
	// message attribute agentbus.reason (platform/bus/sqs.AttrReason). Empty:
	// they are logged and deleted.
	DLQURL  string
	Invoker saga.Invoker
	// Concurrency is how many tasks run at once (default 4); each slot
	// long-polls for one message at a time.
	Concurrency int
	// Wait is the long-poll wait (default and maximum 20s).
	Wait time.Duration
	// Visibility is the visibility timeout asked for on receive and renewed
	// every Visibility/3 while a task runs (default 30s). A worker that dies
	// leaves its task to be redelivered after it.
	Visibility time.Duration
	// MinBackoff and MaxBackoff bound the redelivery delay after an
	// infrastructure error: MinBackoff·2^(receives-1), capped (defaults 1s
	// and 1m). A bus.RetryAfterError's delay wins.
	MinBackoff, MaxBackoff time.Duration
	// ShutdownTimeout bounds how long Run waits for running tasks after its
	// context ends (default 10s); then their context is cancelled and the
	// messages are released unanswered.
	ShutdownTimeout time.Duration
	// Logger (default: discard).
	Logger *slog.Logger
}

// Worker answers saga tasks from the saga queue. Run it in as many
// processes as needed: each message goes to one worker at a time, and the
// Invoker's claim ledger makes a redelivered task return its stored outcome.
type Worker struct {
	cfg WorkerConfig
	log *slog.Logger
}

// NewWorker checks cfg and returns a Worker.
func NewWorker(cfg WorkerConfig) (*Worker, error) {
	switch {
	case cfg.SFN == nil:
		return nil, errors.New("stepfunctions: worker needs a Step Functions client")
	case cfg.SQS == nil:
		return nil, errors.New("stepfunctions: worker needs an SQS client")
	case cfg.QueueURL == "":
		return nil, errors.New("stepfunctions: worker needs the saga queue URL")
	case cfg.Invoker == nil:
		return nil, errors.New("stepfunctions: worker needs an Invoker")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Wait <= 0 || cfg.Wait > maxWait {
		cfg.Wait = maxWait
	}
	if cfg.Visibility <= 0 {
		cfg.Visibility = 30 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{cfg: cfg, log: cfg.Logger}, nil
}

// Run receives and answers tasks until ctx ends, then stops receiving,
// waits up to ShutdownTimeout for the running tasks and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	// Tasks outlive ctx by up to ShutdownTimeout: their own context carries
	// ctx's values and is cancelled only when that runs out.
	tctx, cancelTasks := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelTasks()
	var wg sync.WaitGroup
	for range w.cfg.Concurrency {
		wg.Go(func() { w.poll(ctx, tctx) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	t := time.NewTimer(w.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		w.log.Warn("stepfunctions: shutdown timeout, abandoning running saga tasks")
		cancelTasks()
		<-done
	}
	return nil
}

// poll is one concurrency slot: receive one message, answer it, repeat.
func (w *Worker) poll(ctx, tctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		out, err := w.cfg.SQS.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(w.cfg.QueueURL),
			MaxNumberOfMessages:         1,
			WaitTimeSeconds:             int32(w.cfg.Wait / time.Second),
			VisibilityTimeout:           visSeconds(w.cfg.Visibility),
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if ctx.Err() != nil {
			if out != nil {
				for _, m := range out.Messages {
					// Received while stopping: give it back untouched.
					w.changeVisibility(context.WithoutCancel(ctx), m, 0)
				}
			}
			return
		}
		if err != nil {
			failures++
			d := min(100*time.Millisecond<<min(failures, 7), 10*time.Second)
			w.log.Warn("stepfunctions: receive from the saga queue failed", "err", err, "retry_in", d)
			sleep(ctx, d)
			continue
		}
		failures = 0
		for _, m := range out.Messages {
			w.handle(tctx, m)
		}
	}
}

// message is the task message body: a saga.Task with its token.
func decodeTask(body string) (saga.Task, error) {
	var t saga.Task
	if err := json.Unmarshal([]byte(body), &t); err != nil {
		// Salvage the token, so the execution can be failed at once.
		var tok struct {
			TaskToken string `json:"taskToken"`
		}
		_ = json.Unmarshal([]byte(body), &tok)
		return saga.Task{TaskToken: tok.TaskToken}, fmt.Errorf("not a task JSON object: %w", err)
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"taskToken", t.TaskToken}, {"execution", t.Execution}, {"saga", t.Saga},
		{"step", t.Step}, {"kind", string(t.Kind)}, {"tool", t.Tool},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("task message lacks %v", missing)
	}
	if t.Kind != saga.KindAction && t.Kind != saga.KindCompensation {
		return t, fmt.Errorf("task kind %q is neither %q nor %q", t.Kind, saga.KindAction, saga.KindCompensation)
	}
	var obj map[string]json.RawMessage
	if len(t.Input) == 0 {
		t.Input = json.RawMessage(`{}`)
	} else if err := json.Unmarshal(t.Input, &obj); err != nil || obj == nil {
		return t, errors.New("task input is not a JSON object")
	}
	if t.Attempt < 0 || t.HeartbeatSeconds < 0 || t.TimeoutSeconds < 0 {
		return t, errors.New("task attempt, heartbeatSeconds and timeoutSeconds must not be negative")
	}
	return t, nil
}

// handle answers one message. Every path either deletes the message or
// leaves it to be redelivered on purpose.
func (w *Worker) handle(tctx context.Context, m sqstypes.Message) {
	// Answering and settling must work while shutting down.
	sctx := context.WithoutCancel(tctx)
	task, err := decodeTask(aws.ToString(m.Body))
	if err != nil {
		w.malformed(sctx, m, task.TaskToken, err)
		return
	}
	log := w.log.With("execution", task.Execution, "step", task.Step, "kind", task.Kind, "attempt", task.Attempt, "message_id", aws.ToString(m.MessageId))

	ictx, stopBeats := context.WithCancel(tctx)
	var beats sync.WaitGroup
	beats.Go(func() { w.keepAlive(ictx, m, task, log) })
	// Deferred as well, so that heartbeats and visibility renewals stop
	// even if Invoke never returns normally (runtime.Goexit: a crash test
	// killing this goroutine as a dying process would).
	defer beats.Wait()
	defer stopBeats()
	output, err := w.cfg.Invoker.Invoke(ictx, task)
	stopBeats()
	beats.Wait()

	var stepErr *saga.StepError
	switch {
	case err != nil && tctx.Err() != nil:
		// Shutdown cut the task short (whatever error that made the
		// Invoker return): release it for another worker, whose Invoke
		// finds the claim's outcome if the tool got that far.
		log.Info("stepfunctions: saga task released at shutdown", "err", err)
		w.changeVisibility(sctx, m, 0)
	case err == nil && (len(output) > maxOutputLen || len(output) > 0 && !json.Valid(output)):
		cause := fmt.Sprintf("tool %s returned %d bytes; Step Functions takes at most %d", task.Tool, len(output), maxOutputLen)
		if len(output) <= maxOutputLen {
			cause = fmt.Sprintf("tool %s returned an output that is not JSON", task.Tool)
		}
		stepErr = &saga.StepError{Name: ErrorInvalidOutput, Cause: cause}
		err = stepErr
		fallthrough
	case errors.As(err, &stepErr):
		_, err = w.cfg.SFN.SendTaskFailure(sctx, &sfn.SendTaskFailureInput{
			TaskToken: aws.String(task.TaskToken),
			Error:     aws.String(truncate(stepErr.Name, maxErrorLen)),
			Cause:     aws.String(truncate(stepErr.Cause, maxCauseLen)),
		})
		w.answered(sctx, m, log.With("answer", "failure", "error", stepErr.Name), err)
	case err == nil:
		if len(output) == 0 {
			output = json.RawMessage("null")
		}
		_, err = w.cfg.SFN.SendTaskSuccess(sctx, &sfn.SendTaskSuccessInput{
			TaskToken: aws.String(task.TaskToken),
			Output:    aws.String(string(output)),
		})
		w.answered(sctx, m, log.With("answer", "success"), err)
	default:
		d := w.backoff(m)
		var ra *bus.RetryAfterError
		if errors.As(err, &ra) {
			d = max(ra.Delay, 0)
		}
		log.Warn("stepfunctions: saga task failed on infrastructure; it will be redelivered", "err", err, "retry_in", d)
		w.changeVisibility(sctx, m, d)
	}
}

// answered settles a message after its answer: delete it when the answer
// went through or the task is gone (timed out, its execution ended or moved
// on), else leave it to be redelivered (the ledger then returns the same
// outcome and the answer is sent again).
func (w *Worker) answered(ctx context.Context, m sqstypes.Message, log *slog.Logger, err error) {
	switch {
	case err == nil:
		log.Debug("stepfunctions: saga task answered")
	case isErr[*sfntypes.TaskTimedOut](err), isErr[*sfntypes.TaskDoesNotExist](err), isErr[*sfntypes.InvalidToken](err):
		log.Info("stepfunctions: saga task no longer awaited (timed out, or its execution moved on); dropping it", "err", err)
	default:
		d := w.backoff(m)
		log.Warn("stepfunctions: answering a saga task failed; it will be redelivered", "err", err, "retry_in", d)
		w.changeVisibility(ctx, m, d)
		return
	}
	w.delete(ctx, m)
}

// malformed takes a message that is not a task out of the queue: to the DLQ
// with the reason when there is one, else only logged. When its token could
// be read, the task is failed with agentbus.InvalidInput so the execution
// compensates at once instead of waiting for the step's timeout.
func (w *Worker) malformed(ctx context.Context, m sqstypes.Message, token string, reason error) {
	log := w.log.With("message_id", aws.ToString(m.MessageId), "reason", reason.Error())
	if token != "" {
		_, err := w.cfg.SFN.SendTaskFailure(ctx, &sfn.SendTaskFailureInput{
			TaskToken: aws.String(token),
			Error:     aws.String(def.ErrorInvalidInput),
			Cause:     aws.String(truncate("malformed saga task message: "+reason.Error(), maxCauseLen)),
		})
		if err != nil {
			log.Warn("stepfunctions: failing the task of a malformed message", "err", err)
		}
	}
	if w.cfg.DLQURL != "" {
		_, err := w.cfg.SQS.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl:    aws.String(w.cfg.DLQURL),
			MessageBody: m.Body,
			MessageAttributes: map[string]sqstypes.MessageAttributeValue{
				busqs.AttrReason:      strAttr(truncate("malformed saga task: "+reason.Error(), maxReasonLen)),
				busqs.AttrSourceQueue: strAttr(w.cfg.QueueURL),
				busqs.AttrMessageID:   strAttr(aws.ToString(m.MessageId)),
			},
		})
		if err != nil {
			// Keep it: a later receive tries again (and the queue's redrive
			// policy moves it to the DLQ after maxReceiveCount at worst).
			log.Warn("stepfunctions: sending a malformed saga task to the DLQ failed; leaving it", "err", err)
			return
		}
		log.Warn("stepfunctions: malformed saga task sent to the DLQ")
	} else {
		log.Error("stepfunctions: malformed saga task dropped (no DLQ configured)", "body", truncate(aws.ToString(m.Body), maxReasonLen))
	}
	w.delete(ctx, m)
}

// keepAlive sends SendTaskHeartbeat every HeartbeatSeconds/3 (at least
// minBeat apart) when the task asks for heartbeats, and renews the
// message's visibility every Visibility/3, until ctx ends.
func (w *Worker) keepAlive(ctx context.Context, m sqstypes.Message, task saga.Task, log *slog.Logger) {
	visEvery := max(w.cfg.Visibility/3, 500*time.Millisecond)
	vis := time.NewTicker(visEvery)
	defer vis.Stop()
	var beat <-chan time.Time
	if task.HeartbeatSeconds > 0 {
		t := time.NewTicker(beatInterval(task.HeartbeatSeconds))
		defer t.Stop()
		beat = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-vis.C:
			w.changeVisibility(ctx, m, w.cfg.Visibility)
		case <-beat:
			_, err := w.cfg.SFN.SendTaskHeartbeat(ctx, &sfn.SendTaskHeartbeatInput{TaskToken: aws.String(task.TaskToken)})
			switch {
			case err == nil, ctx.Err() != nil:
			case isErr[*sfntypes.TaskTimedOut](err), isErr[*sfntypes.TaskDoesNotExist](err), isErr[*sfntypes.InvalidToken](err):
				// The execution gave up on this task; its answer will be
				// dropped. Keep the tool call itself: it is claimed in the
				// ledger, so stopping it would not undo anything.
				log.Info("stepfunctions: saga task no longer awaited; stopping heartbeats", "err", err)
				beat = nil
			default:
				log.Warn("stepfunctions: heartbeat failed", "err", err)
			}
		}
	}
}

// minBeat is the shortest heartbeat interval. A third of the heartbeat
// timeout (never a whole second when that is 1-2 s: one beat a second
// would arrive just as a 1 s heartbeat timeout ends) leaves room for two
// late or lost beats.
const minBeat = 200 * time.Millisecond

func beatInterval(heartbeatSeconds int) time.Duration {
	return max(time.Duration(heartbeatSeconds)*time.Second/3, minBeat)
}

func (w *Worker) delete(ctx context.Context, m sqstypes.Message) {
	_, err := w.cfg.SQS.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle})
	if err != nil {
		// Redelivered later: the ledger returns the stored outcome and the
		// answer is refused as no longer awaited, which deletes it.
		w.log.Warn("stepfunctions: deleting an answered saga task failed", "message_id", aws.ToString(m.MessageId), "err", err)
	}
}

func (w *Worker) changeVisibility(ctx context.Context, m sqstypes.Message, d time.Duration) {
	_, err := w.cfg.SQS.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(w.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: visSeconds(d),
	})
	if err != nil && ctx.Err() == nil {
		w.log.Warn("stepfunctions: changing a saga task's visibility failed", "message_id", aws.ToString(m.MessageId), "err", err)
	}
}

// backoff is the redelivery delay after an infrastructure error on the
// message's n-th receive.
func (w *Worker) backoff(m sqstypes.Message) time.Duration {
	n, _ := strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
	d := w.cfg.MinBackoff
	for i := 1; i < n && d < w.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, w.cfg.MaxBackoff)
}

// visSeconds rounds d up to whole seconds within SQS's visibility range.
func visSeconds(d time.Duration) int32 {
	s := (d + time.Second - 1) / time.Second
	return int32(min(max(s, 0), maxVisSec))
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := n - len(ell)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

func strAttr(s string) sqstypes.MessageAttributeValue {
	return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(s)}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
