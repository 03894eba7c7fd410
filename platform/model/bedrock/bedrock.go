// Package bedrock implements model.Model with the Amazon Bedrock Converse API
// (bedrockruntime.Converse): system prompt, messages with text, toolUse and
// toolResult content blocks, toolConfig with JSON Schema tool specs,
// inferenceConfig.maxTokens; the assistant message, stop reason and token
// usage come back.
//
// Retries are done here, not by the SDK (its retryer is switched off per call
// so the two do not multiply): ThrottlingException, ServiceUnavailable,
// InternalServerException, ModelNotReady, ModelTimeout, other 5xx, per-call
// timeouts and network errors are retried with exponential backoff and full
// jitter, bounded by a model.RetryPolicy. Every other failure is returned at
// once, classified with the model.Err* kinds.
package bedrock

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime"

	"github.com/agentbus/agentbus/platform/model"
)

// IAMActions are the IAM actions this adapter calls (Converse is authorised
// by bedrock:InvokeModel on the foundation model or inference profile ARN).
var IAMActions = []string{"bedrock:InvokeModel"}

// ConverseAPI is the one SDK method the adapter uses; *bedrockruntime.Client
// implements it.
type ConverseAPI interface {
	Converse(ctx context.Context, in *bedrockruntime.ConverseInput, optFns ...func(*bedrockruntime.Options)) (*bedrockruntime.ConverseOutput, error)
}

var _ ConverseAPI = (*bedrockruntime.Client)(nil)

// DefaultCallTimeout bounds one Converse call (one attempt). Long answers
// take tens of seconds; a call that hangs longer is treated as transient.
const DefaultCallTimeout = 2 * time.Minute

// Model calls Bedrock Converse. It is safe for concurrent use.
type Model struct {
	client      ConverseAPI
	modelID     string
	retry       model.RetryPolicy
	callTimeout time.Duration
	log         *slog.Logger
}

var _ model.Model = (*Model)(nil)

// Option configures a Model.
type Option func(*Model)

// WithRetryPolicy sets the retry policy (default model.DefaultRetryPolicy).
func WithRetryPolicy(p model.RetryPolicy) Option { return func(m *Model) { m.retry = p } }

// WithCallTimeout bounds each attempt (default DefaultCallTimeout); d <= 0
// leaves only the caller's ctx.
func WithCallTimeout(d time.Duration) Option { return func(m *Model) { m.callTimeout = d } }

// WithLogger sets the logger for retries (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(m *Model) { m.log = l } }

// New returns a Model with its own Bedrock Runtime client built from cfg
// (region, credentials, endpoint override such as AWS_ENDPOINT_URL or
// AWS_ENDPOINT_URL_BEDROCK_RUNTIME come from cfg and the environment).
// modelID is a model id or inference profile id/ARN, e.g.
// "anthropic.claude-3-5-haiku-20241022-v1:0" or
// "us.anthropic.claude-3-5-haiku-20241022-v1:0"; a Request's ModelID
// overrides it.
func New(cfg aws.Config, modelID string, opts ...Option) *Model {
	return NewFromClient(bedrockruntime.NewFromConfig(cfg), modelID, opts...)
}

// NewFromClient returns a Model that borrows client.
func NewFromClient(client ConverseAPI, modelID string, opts ...Option) *Model {
	m := &Model{client: client, modelID: modelID, retry: model.DefaultRetryPolicy, callTimeout: DefaultCallTimeout, log: slog.Default()}
	for _, o := range opts {
		o(m)
	}
	return m
}

const op = "bedrock converse"

// Converse sends req to Bedrock, retrying retryable failures per the policy.
func (m *Model) Converse(ctx context.Context, req model.Request) (model.Response, error) {
	if err := req.Validate(); err != nil {
		return model.Response{}, &model.Error{Kind: model.ErrInvalidRequest, Op: op, Attempts: 0, Err: err}
	}
	modelID := req.ModelID
	if modelID == "" {
		modelID = m.modelID
	}
	if modelID == "" {
		return model.Response{}, &model.Error{Kind: model.ErrInvalidRequest, Op: op, Err: errors.New("no model id (configure one or set Request.ModelID)")}
	}
	in, err := toInput(modelID, req)
	if err != nil {
		return model.Response{}, &model.Error{Kind: model.ErrInvalidRequest, Op: op, Err: err}
	}
	attempt := 0
	return m.retry.Do(ctx, func(ctx context.Context) (model.Response, error) {
		attempt++
		resp, err := m.call(ctx, in)
		if err != nil && model.Retryable(err) {
			m.log.WarnContext(ctx, "bedrock converse failed, may retry", "model", modelID, "attempt", attempt, "err", err)
		}
		return resp, err
	})
}

// call makes one attempt.
func (m *Model) call(ctx context.Context, in *bedrockruntime.ConverseInput) (model.Response, error) {
	callCtx := ctx
	if m.callTimeout > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, m.callTimeout)
		defer cancel()
	}
	out, err := m.client.Converse(callCtx, in, func(o *bedrockruntime.Options) {
		// Retries are ours (see the package doc).
		o.Retryer = aws.NopRetryer{}
	})
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up: not a model failure, never retried.
			return model.Response{}, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		if callCtx.Err() != nil {
			// %v, not %w: the caller must not mistake this for its own
			// deadline (errors.Is(err, context.DeadlineExceeded)).
			return model.Response{}, &model.Error{Kind: model.ErrTransient, Op: op, Attempts: 1,
				Err: fmt.Errorf("call timed out after %v: %v", m.callTimeout, err)}
		}
		return model.Response{}, &model.Error{Kind: classify(err), Op: op, Attempts: 1, Err: err}
	}
	resp, err := fromOutput(out)
	if err != nil {
		return model.Response{}, &model.Error{Kind: model.ErrModel, Op: op, Attempts: 1, Err: err}
	}
	return resp, nil
}
