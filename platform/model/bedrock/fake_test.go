package bedrock_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/agentbus/agentbus/platform/model"
	"github.com/agentbus/agentbus/platform/model/bedrock"
)

// The JSON shapes of the Converse API reference (POST /model/{modelId}/converse),
// limited to the members agentbus uses. Requests are decoded with
// DisallowUnknownFields, so a field the SDK sends that the reference does not
// name, or a wrong nesting, fails the test.

type cvRequest struct {
	Messages        []cvMessage        `json:"messages"`
	System          []cvSystemBlock    `json:"system,omitempty"`
	InferenceConfig *cvInferenceConfig `json:"inferenceConfig,omitempty"`
	ToolConfig      *cvToolConfig      `json:"toolConfig,omitempty"`
}

type cvSystemBlock struct {
	Text string `json:"text"`
}

type cvInferenceConfig struct {
	MaxTokens *int `json:"maxTokens,omitempty"`
}

type cvToolConfig struct {
	Tools []cvTool `json:"tools"`
}

type cvTool struct {
	ToolSpec *cvToolSpec `json:"toolSpec"`
}

type cvToolSpec struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	InputSchema struct {
		JSON json.RawMessage `json:"json"`
	} `json:"inputSchema"`
}

type cvMessage struct {
	Role    string    `json:"role"`
	Content []cvBlock `json:"content"`
}

type cvBlock struct {
	Text             *string         `json:"text,omitempty"`
	ToolUse          *cvToolUse      `json:"toolUse,omitempty"`
	ToolResult       *cvToolResult   `json:"toolResult,omitempty"`
	ReasoningContent json.RawMessage `json:"reasoningContent,omitempty"`
}

type cvToolUse struct {
	ToolUseID string          `json:"toolUseId"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

type cvToolResult struct {
	ToolUseID string                `json:"toolUseId"`
	Content   []cvToolResultContent `json:"content"`
	Status    string                `json:"status,omitempty"`
}

type cvToolResultContent struct {
	JSON json.RawMessage `json:"json,omitempty"`
	Text *string         `json:"text,omitempty"`
}

type cvResponse struct {
	Output struct {
		Message *cvMessage `json:"message,omitempty"`
	} `json:"output"`
	StopReason string    `json:"stopReason"`
	Usage      *cvUsage  `json:"usage,omitempty"`
	Metrics    cvMetrics `json:"metrics"`
}

type cvUsage struct {
	InputTokens  int `json:"inputTokens"`
	OutputTokens int `json:"outputTokens"`
	TotalTokens  int `json:"totalTokens"`
}

type cvMetrics struct {
	LatencyMs int `json:"latencyMs"`
}

var quietLogger = slog.New(slog.DiscardHandler)

func strp(s string) *string { return &s }

// recorded is one request the fake received.
type recorded struct {
	Path   string // escaped path
	Header http.Header
	Body   []byte
	Req    cvRequest
}

// fakeConverse is an httptest server speaking the Converse API. handle
// answers one decoded request; n counts requests (1-based).
type fakeConverse struct {
	t      *testing.T
	srv    *httptest.Server
	handle func(w http.ResponseWriter, r *http.Request, req cvRequest, n int)

	mu   sync.Mutex
	reqs []recorded
}

func newFake(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, req cvRequest, n int)) *fakeConverse {
	t.Helper()
	f := &fakeConverse{t: t, handle: handle}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeConverse) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.EscapedPath(), "/model/") || !strings.HasSuffix(r.URL.EscapedPath(), "/converse") {
		f.t.Errorf("unexpected %s %s", r.Method, r.URL.EscapedPath())
		writeError(w, http.StatusNotFound, "UnknownOperationException", "no such operation")
		return
	}
	var req cvRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		f.t.Errorf("request body does not follow the Converse request shape: %v\n%s", err, body)
		writeError(w, http.StatusBadRequest, "ValidationException", err.Error())
		return
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, recorded{Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body, Req: req})
	n := len(f.reqs)
	f.mu.Unlock()
	f.handle(w, r, req, n)
}

func (f *fakeConverse) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// model returns a bedrock.Model built with New from an aws.Config pointing
// at the fake (the real SDK client, real SigV4 signing, endpoint override).
func (f *fakeConverse) model(modelID string, opts ...bedrock.Option) *bedrock.Model {
	cfg := aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(f.srv.URL),
		HTTPClient:   f.srv.Client(),
	}
	return bedrock.New(cfg, modelID, opts...)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-amzn-RequestId", "req-"+fmt.Sprint(time.Now().UnixNano()))
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes a Converse error response: the status of the API
// reference's Errors section, the error code in X-Amzn-ErrorType, {"message"}.
func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": message})
}

func textResponse(text, stop string, in, out int) cvResponse {
	var r cvResponse
	r.Output.Message = &cvMessage{Role: "assistant", Content: []cvBlock{{Text: strp(text)}}}
	r.StopReason = stop
	r.Usage = &cvUsage{InputTokens: in, OutputTokens: out, TotalTokens: in + out}
	r.Metrics.LatencyMs = 12
	return r
}

// errorFor is how the fake fails with a model error kind: the status and
// code Bedrock uses for it.
var errorFor = map[error]struct {
	status int
	code   string
}{
	model.ErrThrottled:      {http.StatusTooManyRequests, "ThrottlingException"},
	model.ErrTransient:      {http.StatusServiceUnavailable, "ServiceUnavailableException"},
	model.ErrInvalidRequest: {http.StatusBadRequest, "ValidationException"},
	model.ErrAccessDenied:   {http.StatusForbidden, "AccessDeniedException"},
	model.ErrModelNotFound:  {http.StatusNotFound, "ResourceNotFoundException"},
	model.ErrModel:          {http.StatusFailedDependency, "ModelErrorException"},
}

// modelIDFromPath extracts the modelId path parameter.
func modelIDFromPath(escaped string) string {
	p := strings.TrimSuffix(strings.TrimPrefix(escaped, "/model/"), "/converse")
	id, err := url.PathUnescape(p)
	if err != nil {
		return p
	}
	return id
}
