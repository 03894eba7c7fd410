package dynamodb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/blob/localfs"
	"github.com/agentbus/agentbus/platform/state"
	ddb "github.com/agentbus/agentbus/platform/state/dynamodb"
	"github.com/agentbus/agentbus/platform/state/statetest"
)

func motoClient(t *testing.T) *awsddb.Client {
	t.Helper()
	ep := testenv.AWSEndpoint(t)
	return awsddb.NewFromConfig(aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint: aws.String(ep),
	})
}

func uniqueTable(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "agentbus-statetest-" + hex.EncodeToString(b[:])
}

// recorder wraps the client and records which operations the store calls,
// so that TestConformance can check them against the IAM action lists.
type recorder struct {
	ddb.API
	mu  sync.Mutex
	ops map[string]bool
}

func (r *recorder) rec(op string) {
	r.mu.Lock()
	r.ops[op] = true
	r.mu.Unlock()
}

func (r *recorder) GetItem(ctx context.Context, in *awsddb.GetItemInput, o ...func(*awsddb.Options)) (*awsddb.GetItemOutput, error) {
	r.rec("GetItem")
	return r.API.GetItem(ctx, in, o...)
}

func (r *recorder) PutItem(ctx context.Context, in *awsddb.PutItemInput, o ...func(*awsddb.Options)) (*awsddb.PutItemOutput, error) {
	r.rec("PutItem")
	return r.API.PutItem(ctx, in, o...)
}

func (r *recorder) UpdateItem(ctx context.Context, in *awsddb.UpdateItemInput, o ...func(*awsddb.Options)) (*awsddb.UpdateItemOutput, error) {
	r.rec("UpdateItem")
	return r.API.UpdateItem(ctx, in, o...)
}

func (r *recorder) Query(ctx context.Context, in *awsddb.QueryInput, o ...func(*awsddb.Options)) (*awsddb.QueryOutput, error) {
	r.rec("Query")
	return r.API.Query(ctx, in, o...)
}

func (r *recorder) BatchGetItem(ctx context.Context, in *awsddb.BatchGetItemInput, o ...func(*awsddb.Options)) (*awsddb.BatchGetItemOutput, error) {
	r.rec("BatchGetItem")
	return r.API.BatchGetItem(ctx, in, o...)
}

func (r *recorder) BatchWriteItem(ctx context.Context, in *awsddb.BatchWriteItemInput, o ...func(*awsddb.Options)) (*awsddb.BatchWriteItemOutput, error) {
	r.rec("BatchWriteItem")
	for _, reqs := range in.RequestItems {
		for _, w := range reqs {
			if w.DeleteRequest != nil {
				r.rec("DeleteItem")
			}
			if w.PutRequest != nil {
				r.rec("PutItem")
			}
		}
	}
	return r.API.BatchWriteItem(ctx, in, o...)
}

func (r *recorder) TransactWriteItems(ctx context.Context, in *awsddb.TransactWriteItemsInput, o ...func(*awsddb.Options)) (*awsddb.TransactWriteItemsOutput, error) {
	// Authorized per contained action.
	for _, it := range in.TransactItems {
		switch {
		case it.Put != nil:
			r.rec("PutItem")
		case it.Update != nil:
			r.rec("UpdateItem")
		case it.Delete != nil:
			r.rec("DeleteItem")
		case it.ConditionCheck != nil:
			r.rec("ConditionCheckItem")
		}
	}
	return r.API.TransactWriteItems(ctx, in, o...)
}

func (r *recorder) CreateTable(ctx context.Context, in *awsddb.CreateTableInput, o ...func(*awsddb.Options)) (*awsddb.CreateTableOutput, error) {
	r.rec("CreateTable")
	return r.API.CreateTable(ctx, in, o...)
}

func (r *recorder) DescribeTable(ctx context.Context, in *awsddb.DescribeTableInput, o ...func(*awsddb.Options)) (*awsddb.DescribeTableOutput, error) {
	r.rec("DescribeTable")
	return r.API.DescribeTable(ctx, in, o...)
}

func (r *recorder) DescribeTimeToLive(ctx context.Context, in *awsddb.DescribeTimeToLiveInput, o ...func(*awsddb.Options)) (*awsddb.DescribeTimeToLiveOutput, error) {
	r.rec("DescribeTimeToLive")
	return r.API.DescribeTimeToLive(ctx, in, o...)
}

func (r *recorder) UpdateTimeToLive(ctx context.Context, in *awsddb.UpdateTimeToLiveInput, o ...func(*awsddb.Options)) (*awsddb.UpdateTimeToLiveOutput, error) {
	r.rec("UpdateTimeToLive")
	return r.API.UpdateTimeToLive(ctx, in, o...)
}

// serial runs one DynamoDB request at a time. moto's DynamoDB has no
// locking and its server is threaded, so two concurrent conditional writes
// to one item can both pass their condition — a guarantee AWS gives and moto
// lacks (see docs/state.md). Serialising requests restores per-request
// atomicity only: the store's goroutines still interleave their reads and
// conditional writes freely, which is what the race cases exercise.
type serial struct {
	ddb.API
	mu sync.Mutex
}

func (s *serial) GetItem(ctx context.Context, in *awsddb.GetItemInput, o ...func(*awsddb.Options)) (*awsddb.GetItemOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.API.GetItem(ctx, in, o...)
}

func (s *serial) PutItem(ctx context.Context, in *awsddb.PutItemInput, o ...func(*awsddb.Options)) (*awsddb.PutItemOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.API.PutItem(ctx, in, o...)
}

func (s *serial) UpdateItem(ctx context.Context, in *awsddb.UpdateItemInput, o ...func(*awsddb.Options)) (*awsddb.UpdateItemOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.API.UpdateItem(ctx, in, o...)
}

func (s *serial) Query(ctx context.Context, in *awsddb.QueryInput, o ...func(*awsddb.Options)) (*awsddb.QueryOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.API.Query(ctx, in, o...)
}

func (s *serial) BatchGetItem(ctx context.Context, in *awsddb.BatchGetItemInput, o ...func(*awsddb.Options)) (*awsddb.BatchGetItemOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.API.BatchGetItem(ctx, in, o...)
}

func (s *serial) BatchWriteItem(ctx context.Context, in *awsddb.BatchWriteItemInput, o ...func(*awsddb.Options)) (*awsddb.BatchWriteItemOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.API.BatchWriteItem(ctx, in, o...)
}

func (s *serial) TransactWriteItems(ctx context.Context, in *awsddb.TransactWriteItemsInput, o ...func(*awsddb.Options)) (*awsddb.TransactWriteItemsOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.API.TransactWriteItems(ctx, in, o...)
}

// countingBlobs counts Puts, to prove large values were offloaded.
type countingBlobs struct {
	ddb.Blobs
	mu   sync.Mutex
	keys []string
}

func (c *countingBlobs) Put(ctx context.Context, key string, data []byte) error {
	c.mu.Lock()
	c.keys = append(c.keys, key)
	c.mu.Unlock()
	return c.Blobs.Put(ctx, key, data)
}

// newMotoStore creates a store on a fresh table in moto (through api, or
// client itself when api is nil) and deletes the table when the test ends.
// The client is made once per top-level test: testenv probes moto on every
// call, and a probe timing out under load would skip the subtest.
func newMotoStore(t *testing.T, client *awsddb.Client, api ddb.API, blobs ddb.Blobs) *ddb.Store {
	t.Helper()
	if api == nil {
		api = client
	}
	table := uniqueTable(t)
	opts := []ddb.Option{}
	if blobs != nil {
		opts = append(opts, ddb.WithBlobs(blobs))
	}
	s, err := ddb.NewFromClient(api, table, opts...)
	if err != nil {
		t.Fatalf("NewFromClient: %v", err)
	}
	if err := s.EnsureTable(t.Context()); err != nil {
		t.Fatalf("EnsureTable: %v", err)
	}
	t.Cleanup(func() {
		_, _ = client.DeleteTable(context.Background(), &awsddb.DeleteTableInput{TableName: aws.String(table)})
	})
	return s
}

func localBlobs(t *testing.T) ddb.Blobs {
	t.Helper()
	b, err := localfs.New(t.TempDir())
	if err != nil {
		t.Fatalf("localfs.New: %v", err)
	}
	return b
}

func TestConformance(t *testing.T) {
	t.Parallel()
	client := motoClient(t)
	rec := &recorder{API: client, ops: map[string]bool{}}
	t.Run("suite", func(t *testing.T) {
		statetest.Run(t, func(t *testing.T) state.Store {
			return newMotoStore(t, client, &serial{API: rec}, localBlobs(t))
		})
	})
	// Every operation the store called is covered by the IAM action lists
	// (the deploy builds least-privilege roles from them), and no listed
	// action is unused.
	allowed := append(slices.Clone(ddb.IAMActions), ddb.BootstrapIAMActions...)
	var used []string
	for op := range rec.ops {
		used = append(used, "dynamodb:"+op)
		if !slices.Contains(allowed, "dynamodb:"+op) {
			t.Errorf("the store called %s, which IAMActions/BootstrapIAMActions do not list", op)
		}
	}
	for _, a := range allowed {
		if !slices.Contains(used, a) {
			t.Errorf("IAM action %s is listed but the suite never used it (used: %v)", a, used)
		}
	}
}

func TestEnsureTableIdempotent(t *testing.T) {
	t.Parallel()
	client := motoClient(t)
	s := newMotoStore(t, client, nil, nil)
	if err := s.EnsureTable(t.Context()); err != nil {
		t.Fatalf("second EnsureTable: %v", err)
	}
	// The TTL attribute is the one the design documents.
	tables, err := client.ListTables(t.Context(), &awsddb.ListTablesInput{})
	if err != nil {
		t.Fatalf("ListTables: %v", err)
	}
	for _, name := range tables.TableNames {
		if !strings.HasPrefix(name, "agentbus-statetest-") {
			continue
		}
		ttl, err := client.DescribeTimeToLive(t.Context(), &awsddb.DescribeTimeToLiveInput{TableName: aws.String(name)})
		if err != nil {
			continue // deleted meanwhile by another test
		}
		if d := ttl.TimeToLiveDescription; d == nil || aws.ToString(d.AttributeName) != "expiresAt" || d.TimeToLiveStatus != types.TimeToLiveStatusEnabled {
			t.Errorf("table %s TTL = %+v, want enabled on expiresAt", name, d)
		}
		return
	}
	t.Fatal("no test table found")
}

func TestLargeEntryOffloaded(t *testing.T) {
	t.Parallel()
	blobs := &countingBlobs{Blobs: localBlobs(t)}
	s := newMotoStore(t, motoClient(t), nil, blobs)
	ctx := t.Context()
	big := []byte(`{"x":"` + strings.Repeat("y", state.MaxInlineValue) + `"}`)
	if _, err := s.AppendHistory(ctx, "s-1", state.Entry{Source: "src", ID: "big", Data: big}); err != nil {
		t.Fatalf("AppendHistory: %v", err)
	}
	if len(blobs.keys) != 1 || !strings.HasPrefix(blobs.keys[0], state.BlobPrefix("s-1")) {
		t.Fatalf("blob puts = %q, want one under %q", blobs.keys, state.BlobPrefix("s-1"))
	}
	// Small entries and small outbox payloads stay inline.
	if _, err := s.AppendHistory(ctx, "s-1", state.Entry{Source: "src", ID: "small", Data: []byte(`{}`)}); err != nil {
		t.Fatalf("AppendHistory: %v", err)
	}
	if _, err := s.CreateSession(ctx, state.Session{ID: "s-1", Status: state.StatusRunning}, state.OutboxEvent{ID: "o", Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	if len(blobs.keys) != 1 {
		t.Fatalf("small values were offloaded: %q", blobs.keys)
	}
	// Many outbox events that together exceed a transaction's 4 MB are
	// offloaded largest first, and the write succeeds.
	var out []state.OutboxEvent
	for i := range 20 {
		out = append(out, state.OutboxEvent{ID: "many-" + string(rune('a'+i)), Payload: []byte(strings.Repeat("p", 250<<10))})
	}
	if _, err := s.CreateSession(ctx, state.Session{ID: "s-2", Status: state.StatusRunning}, out...); err != nil {
		t.Fatalf("CreateSession with 5 MB of outbox events: %v", err)
	}
	if len(blobs.keys) < 2 {
		t.Fatalf("no outbox payload offloaded: %q", blobs.keys)
	}
	evs, err := s.PendingOutbox(ctx, 100)
	if err != nil || len(evs) != 21 {
		t.Fatalf("PendingOutbox = %d, %v; want 21", len(evs), err)
	}
	for _, e := range evs {
		if strings.HasPrefix(e.ID, "many-") && len(e.Payload) != 250<<10 {
			t.Errorf("outbox %s read back as %d bytes", e.ID, len(e.Payload))
		}
	}
}

func TestLargeWithoutBlobs(t *testing.T) {
	t.Parallel()
	s := newMotoStore(t, motoClient(t), nil, nil)
	big := []byte(strings.Repeat("y", state.MaxInlineValue+1))
	_, err := s.AppendHistory(t.Context(), "s-1", state.Entry{Source: "src", ID: "big", Data: big})
	if !errors.Is(err, state.ErrTooLarge) {
		t.Fatalf("AppendHistory(large, no blobs) = %v, want ErrTooLarge", err)
	}
	_, err = s.CreateSession(t.Context(), state.Session{ID: "s", Status: state.StatusRunning}, state.OutboxEvent{ID: "o", Payload: big})
	if !errors.Is(err, state.ErrTooLarge) {
		t.Fatalf("CreateSession(large outbox, no blobs) = %v, want ErrTooLarge", err)
	}
}

// fakeAPI answers writes with a fixed error, to test the translation of
// DynamoDB's conditional failures without depending on how moto words them.
type fakeAPI struct {
	ddb.API
	err error
}

func (f fakeAPI) GetItem(context.Context, *awsddb.GetItemInput, ...func(*awsddb.Options)) (*awsddb.GetItemOutput, error) {
	return &awsddb.GetItemOutput{}, nil
}

// Query finds nothing: the step is not done yet, so the write is tried.
func (f fakeAPI) Query(context.Context, *awsddb.QueryInput, ...func(*awsddb.Options)) (*awsddb.QueryOutput, error) {
	return &awsddb.QueryOutput{}, nil
}

func (f fakeAPI) TransactWriteItems(context.Context, *awsddb.TransactWriteItemsInput, ...func(*awsddb.Options)) (*awsddb.TransactWriteItemsOutput, error) {
	return nil, f.err
}

func (f fakeAPI) UpdateItem(context.Context, *awsddb.UpdateItemInput, ...func(*awsddb.Options)) (*awsddb.UpdateItemOutput, error) {
	return nil, f.err
}

func TestErrorTranslation(t *testing.T) {
	t.Parallel()
	cond := &types.TransactionCanceledException{Message: aws.String("cancelled"), CancellationReasons: []types.CancellationReason{
		{Code: aws.String("None")}, {Code: aws.String("ConditionalCheckFailed")},
	}}
	conflict := &types.TransactionCanceledException{Message: aws.String("cancelled"), CancellationReasons: []types.CancellationReason{
		{Code: aws.String("TransactionConflict")}, {Code: aws.String("None")},
	}}
	cases := []struct {
		name  string
		err   error
		first bool
		want  error
	}{
		{"transaction condition failed", cond, false, nil},
		{"single condition failed", &types.ConditionalCheckFailedException{Message: aws.String("no")}, false, nil},
		{"other error", errors.New("boom"), false, errors.New("boom")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := ddb.NewFromClient(fakeAPI{err: c.err}, "t")
			if err != nil {
				t.Fatal(err)
			}
			// CompleteStep maps a lost condition to "not first", no error.
			first, err := s.CompleteStep(t.Context(), state.StepKey{SessionID: "s", Step: 1}, state.OutboxEvent{ID: "o", Payload: []byte(`{}`)})
			if c.want == nil && (err != nil || first != c.first) {
				t.Fatalf("CompleteStep = %v, %v; want %v, nil", first, err, c.first)
			}
			if c.want != nil && (err == nil || !strings.Contains(err.Error(), c.want.Error())) {
				t.Fatalf("CompleteStep error = %v, want %v", err, c.want)
			}
		})
	}
	// A transaction that keeps losing to concurrent ones is retried, then
	// reported (not mistaken for a lost condition).
	s, _ := ddb.NewFromClient(fakeAPI{err: conflict}, "t")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	first, err := s.CompleteStep(ctx, state.StepKey{SessionID: "s", Step: 1}, state.OutboxEvent{ID: "o", Payload: []byte(`{}`)})
	if err == nil || first {
		t.Fatalf("CompleteStep under endless transaction conflicts = %v, %v; want an error", first, err)
	}
	// UpdateSession: a lost condition on an existing session is ErrConflict.
	_, err = ddb.NewFromClient(nil, "t")
	if !errors.Is(err, state.ErrInvalid) {
		t.Fatalf("NewFromClient(nil) = %v, want ErrInvalid", err)
	}
}

// doneStepAPI reports a step already opened and completed, and fails the
// test's expectations if a transaction is attempted anyway.
type doneStepAPI struct {
	ddb.API
	tx *atomic.Int32
}

func (f doneStepAPI) Query(context.Context, *awsddb.QueryInput, ...func(*awsddb.Options)) (*awsddb.QueryOutput, error) {
	return &awsddb.QueryOutput{Items: []map[string]types.AttributeValue{{
		"pk": &types.AttributeValueMemberS{Value: "SESSION#s"}, "sk": &types.AttributeValueMemberS{Value: "STEP#0000000001"},
		"done":     &types.AttributeValueMemberBOOL{Value: true},
		"expected": &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberS{Value: "c1"}}},
	}}}, nil
}

func (f doneStepAPI) GetItem(context.Context, *awsddb.GetItemInput, ...func(*awsddb.Options)) (*awsddb.GetItemOutput, error) {
	return &awsddb.GetItemOutput{Item: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "SESSION#s"}}}, nil
}

func (f doneStepAPI) TransactWriteItems(context.Context, *awsddb.TransactWriteItemsInput, ...func(*awsddb.Options)) (*awsddb.TransactWriteItemsOutput, error) {
	f.tx.Add(1)
	return nil, errors.New("unexpected transaction")
}

// TestKnownConflictsSendNoTransaction: a write whose condition is already
// known to fail (redelivered OpenStep, losing CompleteStep, existing
// session) is answered from a read; no transaction is sent (a failed one
// costs capacity on AWS and restores the whole table on moto).
func TestKnownConflictsSendNoTransaction(t *testing.T) {
	t.Parallel()
	var tx atomic.Int32
	s, err := ddb.NewFromClient(doneStepAPI{tx: &tx}, "t")
	if err != nil {
		t.Fatal(err)
	}
	ob := state.OutboxEvent{ID: "o", Payload: []byte(`{}`)}
	k := state.StepKey{SessionID: "s", Step: 1}
	if _, opened, err := s.OpenStep(t.Context(), k, []string{"c1"}, ob); err != nil || opened {
		t.Fatalf("OpenStep of an opened step = %v, %v; want false, nil", opened, err)
	}
	if first, err := s.CompleteStep(t.Context(), k, ob); err != nil || first {
		t.Fatalf("CompleteStep of a done step = %v, %v; want false, nil", first, err)
	}
	if _, err := s.CreateSession(t.Context(), state.Session{ID: "s", Status: state.StatusRunning}, ob); !errors.Is(err, state.ErrConflict) {
		t.Fatalf("CreateSession of an existing session = %v, want ErrConflict", err)
	}
	if n := tx.Load(); n != 0 {
		t.Fatalf("%d transactions sent; want none", n)
	}
}

// lostAnswerAPI sends every TransactWriteItems twice and answers with the
// second outcome: what a client sees when the first succeeded, its answer
// was lost, and the SDK retried (moto does not honour ClientRequestToken,
// so the retry fails its conditions).
type lostAnswerAPI struct{ ddb.API }

func (a lostAnswerAPI) TransactWriteItems(ctx context.Context, in *awsddb.TransactWriteItemsInput, o ...func(*awsddb.Options)) (*awsddb.TransactWriteItemsOutput, error) {
	if _, err := a.API.TransactWriteItems(ctx, in, o...); err != nil {
		return nil, err
	}
	return a.API.TransactWriteItems(ctx, in, o...)
}

// TestHistoryAppendWhoseAnswerWasLost: entries a call wrote in a transaction
// whose answer was lost count as added by that call, once each; a later call
// with the same events still counts them as duplicates.
func TestHistoryAppendWhoseAnswerWasLost(t *testing.T) {
	t.Parallel()
	client := motoClient(t)
	s := newMotoStore(t, client, lostAnswerAPI{API: client}, nil)
	ctx := t.Context()
	e := func(id string) state.Entry {
		return state.Entry{Source: "src", ID: id, Type: "t", Data: []byte(`{}`)}
	}
	if n, err := s.AppendHistory(ctx, "s-1", e("a"), e("b")); err != nil || n != 2 {
		t.Fatalf("AppendHistory = %d, %v; want 2", n, err)
	}
	if n, err := s.AppendHistory(ctx, "s-1", e("b"), e("c")); err != nil || n != 1 {
		t.Fatalf("AppendHistory(b again, c) = %d, %v; want 1", n, err)
	}
	es, err := s.ReadHistory(ctx, "s-1", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range es {
		got = append(got, fmt.Sprintf("%d:%s", x.Seq, x.ID))
	}
	if want := []string{"1:a", "2:b", "3:c"}; !slices.Equal(got, want) {
		t.Errorf("history = %q, want %q", got, want)
	}
}
