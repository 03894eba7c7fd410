// Package dynamodb is the AWS state.Store: one DynamoDB table, single-table
// design (see docs/state.md), on-demand capacity, TTL on `expiresAt`.
//
// Conditional writes carry every guarantee: a session's version, a claim's
// revision, "attribute_not_exists" for once-only rows. A state change with
// outbox events is one TransactWriteItems call. Values a 400 KB item cannot
// hold (history entries, outbox payloads) go to a blob store (S3) and the
// item keeps the key. Claim expiry is checked on every read: DynamoDB's TTL
// deletion may lag by days and only cleans up.
//
// The IAM actions it calls are in IAMActions (services) and
// BootstrapIAMActions (EnsureTable).
package dynamodb

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/agentbus/agentbus/platform/state"
	"github.com/agentbus/agentbus/platform/state/internal/rules"
)

// IAMActions are the actions a service using the store needs on the table
// (arn:aws:dynamodb:REGION:ACCOUNT:table/TABLE).
var IAMActions = []string{
	"dynamodb:BatchGetItem",
	"dynamodb:BatchWriteItem",
	"dynamodb:DeleteItem",
	"dynamodb:GetItem",
	"dynamodb:PutItem",
	"dynamodb:Query",
	"dynamodb:UpdateItem",
}

// BootstrapIAMActions are the actions EnsureTable needs (stack bootstrap
// only). TransactWriteItems is authorized by the item actions it contains,
// so it needs no action of its own.
var BootstrapIAMActions = []string{
	"dynamodb:CreateTable",
	"dynamodb:DescribeTable",
	"dynamodb:DescribeTimeToLive",
	"dynamodb:UpdateTimeToLive",
}

// API is the subset of the DynamoDB client the store calls (a fake can
// implement it to test error paths; the real tests run against moto).
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	DescribeTimeToLive(ctx context.Context, in *dynamodb.DescribeTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// Blobs is the blob store large values are offloaded to (blob.Store
// satisfies it). Get must return an error for a missing key.
type Blobs interface {
	Put(ctx context.Context, key string, data []byte) error
	Get(ctx context.Context, key string) ([]byte, error)
}

// Store is a state.Store on one DynamoDB table.
type Store struct {
	api   API
	table string
	blobs Blobs
	now   func() time.Time
	// txBudget is the payload bytes one transaction may carry inline
	// (TransactWriteItems allows 4 MB in total).
	txBudget int
	// sessionLocks serialise this process's conditional writes to one
	// session (striped by session id): history appends, which race on the
	// session's sequence counter, session updates (version checks), and
	// step transitions, where every fan-in result tries to complete the
	// step. A service's concurrent handlers
	// would otherwise lose transactions to each other: each loss costs a
	// failed transaction (capacity on AWS; on moto, a whole-table restore
	// that erases other writes, docs/moto-differences.md D3) and a retry.
	// Other processes still race through the conditions, which stay the
	// guarantee.
	sessionLocks [64]sync.Mutex
}

// lockSession takes this process's lock of the session's stripe.
func (st *Store) lockSession(sessionID string) (unlock func()) {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sessionID))
	mu := &st.sessionLocks[h.Sum32()%uint32(len(st.sessionLocks))]
	mu.Lock()
	return mu.Unlock
}

var _ state.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithBlobs sets the blob store for values too large for an item. Without
// one, such values fail with state.ErrTooLarge.
func WithBlobs(b Blobs) Option { return func(s *Store) { s.blobs = b } }

// WithClock sets the clock used for timestamps, leases and expiry (tests).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns a store on table using a client built from cfg (region,
// credentials, endpoint override such as AWS_ENDPOINT_URL).
func New(cfg aws.Config, table string, opts ...Option) (*Store, error) {
	return NewFromClient(dynamodb.NewFromConfig(cfg), table, opts...)
}

// NewFromClient returns a store on table that uses (borrows) api.
func NewFromClient(api API, table string, opts ...Option) (*Store, error) {
	if api == nil || table == "" {
		return nil, fmt.Errorf("%w: dynamodb state store needs a client and a table name", state.ErrInvalid)
	}
	s := &Store{api: api, table: table, now: time.Now, txBudget: 3 << 20}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Close does nothing: the client holds no resources of its own.
func (s *Store) Close() error { return nil }

// Key layout (docs/state.md has the table).
const (
	attrPK        = "pk"
	attrSK        = "sk"
	attrExpiresAt = "expiresAt" // TTL attribute, epoch seconds

	skMeta        = "META"
	skHistSeq     = "HSEQ"
	pkSessionsIdx = "SESSIONS"
	pkOutbox      = "OUTBOX"
	maxSeqSK      = "H#99999999999999999999"
)

func sessionPK(id string) string         { return "SESSION#" + id }
func histSK(seq int64) string            { return fmt.Sprintf("H#%020d", seq) }
func claimSK(key string) string          { return "CLAIM#" + key }
func stepSK(step int) string             { return fmt.Sprintf("STEP#%010d", step) }
func resultSK(step int, c string) string { return stepSK(step) + "#CALL#" + c }
func indexSK(createdMs int64, id string) string {
	return fmt.Sprintf("%016d#%s", createdMs, id)
}

// dedupeSK escapes source and id so that "#" inside them cannot make two
// different pairs collide.
// A pair too long for DynamoDB's 1 KB sort key is hashed instead.
func dedupeSK(source, id string) string {
	sk := "HID#" + url.PathEscape(source) + "#" + url.PathEscape(id)
	if len(sk) > 900 {
		return "HIDH#" + hashKey(source, id)
	}
	return sk
}

func hashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:40]
}

func historyBlobKey(sessionID, source, id string) string {
	return state.BlobPrefix(sessionID) + "history/" + hashKey(source, id)
}

func outboxBlobKey(id string) string { return state.OutboxBlobPrefix + hashKey(id) }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{attrPK: s(pk), attrSK: s(sk)}
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(v, 10)}
}
func b(v []byte) types.AttributeValue     { return &types.AttributeValueMemberB{Value: v} }
func boolean(v bool) types.AttributeValue { return &types.AttributeValueMemberBOOL{Value: v} }

func getS(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func getN(item map[string]types.AttributeValue, name string) int64 {
	if v, ok := item[name].(*types.AttributeValueMemberN); ok {
		i, _ := strconv.ParseInt(v.Value, 10, 64)
		return i
	}
	return 0
}

func getB(item map[string]types.AttributeValue, name string) []byte {
	if v, ok := item[name].(*types.AttributeValueMemberB); ok {
		return v.Value
	}
	return nil
}

func getBool(item map[string]types.AttributeValue, name string) bool {
	v, ok := item[name].(*types.AttributeValueMemberBOOL)
	return ok && v.Value
}

func ms(v int64) time.Time { return time.UnixMilli(v).UTC() }

// setBytes stores v under name unless it is empty (an absent attribute
// reads back as nil).
func setBytes(item map[string]types.AttributeValue, name string, v []byte) {
	if len(v) > 0 {
		item[name] = b(v)
	}
}

// ---- error translation and retries

// isCondFailed reports whether err is a lost conditional write: a
// ConditionalCheckFailedException, or a cancelled transaction whose reasons
// include ConditionalCheckFailed.
func isCondFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return true
	}
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		for _, r := range tce.CancellationReasons {
			if aws.ToString(r.Code) == "ConditionalCheckFailed" {
				return true
			}
		}
	}
	return false
}

// isTxConflict reports a transaction that lost to another concurrent one
// (nothing was written; retrying is safe).
func isTxConflict(err error) bool {
	var tce *types.TransactionCanceledException
	if errors.As(err, &tce) {
		for _, r := range tce.CancellationReasons {
			if aws.ToString(r.Code) == "TransactionConflict" {
				return true
			}
		}
		return len(tce.CancellationReasons) == 0
	}
	var tc *types.TransactionConflictException
	return errors.As(err, &tc)
}

const maxAttempts = 60

// backoff sleeps a jittered, growing delay before retry attempt i.
func backoff(ctx context.Context, i int) error {
	d := time.Duration(2+rand.IntN(8*(min(i, 10)+1))) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ---- writes with outbox

// outboxItems builds the outbox puts of one transaction, offloading
// payloads to the blob store when one is too big for an item or when the
// transaction would exceed its size budget (largest first).
func (st *Store) outboxItems(ctx context.Context, out []state.OutboxEvent) ([]types.TransactWriteItem, error) {
	if len(out) == 0 {
		return nil, nil
	}
	offload := make([]bool, len(out))
	total := 0
	for i, e := range out {
		if len(e.Payload) > state.MaxInlineValue {
			offload[i] = true
		} else {
			total += len(e.Payload)
		}
	}
	if total > st.txBudget {
		idx := make([]int, len(out))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return len(out[idx[a]].Payload) > len(out[idx[b]].Payload) })
		for _, i := range idx {
			if total <= st.txBudget {
				break
			}
			if !offload[i] {
				offload[i] = true
				total -= len(out[i].Payload)
			}
		}
	}
	now := st.now().UnixMilli()
	items := make([]types.TransactWriteItem, 0, len(out))
	for i, e := range out {
		item := key(pkOutbox, e.ID)
		item["createdAt"] = n(now)
		if offload[i] {
			if st.blobs == nil {
				return nil, fmt.Errorf("outbox event %q of %d bytes and no blob store: %w", e.ID, len(e.Payload), state.ErrTooLarge)
			}
			k := outboxBlobKey(e.ID)
			if err := st.blobs.Put(ctx, k, e.Payload); err != nil {
				return nil, fmt.Errorf("offload outbox event %q: %w", e.ID, err)
			}
			item["ref"] = s(k)
		} else {
			item["payload"] = b(e.Payload)
		}
		items = append(items, types.TransactWriteItem{Put: &types.Put{TableName: &st.table, Item: item}})
	}
	return items, nil
}

// write performs one state change (primary, with its condition) and its
// outbox events atomically: a single-item call when there are no outbox
// events, else one TransactWriteItems. A lost condition is ErrConflict.
func (st *Store) write(ctx context.Context, primary []types.TransactWriteItem, out []state.OutboxEvent) error {
	ob, err := st.outboxItems(ctx, out)
	if err != nil {
		return err
	}
	all := append(slices.Clone(primary), ob...)
	if len(all) == 1 {
		err = st.single(ctx, all[0])
	} else {
		_, err = st.api.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: all})
	}
	switch {
	case err == nil:
		return nil
	case isCondFailed(err):
		return fmt.Errorf("conditional write: %w", state.ErrConflict)
	case isTxConflict(err):
		return fmt.Errorf("%w: %w", errTxConflict, err)
	}
	return fmt.Errorf("dynamodb write: %w", err)
}

// errTxConflict marks a transaction cancelled by a concurrent one; callers
// retry it.
var errTxConflict = errors.New("transaction conflict")

func (st *Store) single(ctx context.Context, it types.TransactWriteItem) error {
	var err error
	switch {
	case it.Put != nil:
		_, err = st.api.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: it.Put.TableName, Item: it.Put.Item, ConditionExpression: it.Put.ConditionExpression,
			ExpressionAttributeNames: it.Put.ExpressionAttributeNames, ExpressionAttributeValues: it.Put.ExpressionAttributeValues,
		})
	case it.Update != nil:
		_, err = st.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: it.Update.TableName, Key: it.Update.Key, UpdateExpression: it.Update.UpdateExpression,
			ConditionExpression:      it.Update.ConditionExpression,
			ExpressionAttributeNames: it.Update.ExpressionAttributeNames, ExpressionAttributeValues: it.Update.ExpressionAttributeValues,
		})
	default:
		err = errors.New("unsupported single write")
	}
	return err
}

// retryTx runs fn until it does not fail with a transaction conflict.
func retryTx(ctx context.Context, fn func() error) error {
	var err error
	for i := range maxAttempts {
		if err = fn(); !errors.Is(err, errTxConflict) {
			return err
		}
		if berr := backoff(ctx, i); berr != nil {
			return berr
		}
	}
	return err
}

func (st *Store) get(ctx context.Context, pk, sk string) (map[string]types.AttributeValue, error) {
	out, err := st.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: &st.table, Key: key(pk, sk), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, fmt.Errorf("dynamodb get %s/%s: %w", pk, sk, err)
	}
	return out.Item, nil
}

// queryAll runs a consistent query and returns every item of every page
// (or stops after limit items when limit > 0).
func (st *Store) queryAll(ctx context.Context, in *dynamodb.QueryInput, limit int) ([]map[string]types.AttributeValue, error) {
	in.TableName = &st.table
	in.ConsistentRead = aws.Bool(true)
	var items []map[string]types.AttributeValue
	for {
		if limit > 0 {
			in.Limit = aws.Int32(int32(limit - len(items)))
		}
		out, err := st.api.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("dynamodb query: %w", err)
		}
		items = append(items, out.Items...)
		if len(out.LastEvaluatedKey) == 0 || (limit > 0 && len(items) >= limit) {
			return items, nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// ---- sessions

func validateSession(sess state.Session) error {
	if err := state.ValidateSessionID(sess.ID); err != nil {
		return err
	}
	if sess.Status == "" {
		return fmt.Errorf("%w: session %q has an empty status", state.ErrInvalid, sess.ID)
	}
	if len(sess.Data) > state.MaxInlineValue {
		return fmt.Errorf("session data of %d bytes, max %d: %w", len(sess.Data), state.MaxInlineValue, state.ErrTooLarge)
	}
	return nil
}

func sessionFromItem(item map[string]types.AttributeValue) state.Session {
	return state.Session{
		ID:        getS(item, "sid"),
		Version:   getN(item, "version"),
		Status:    state.Status(getS(item, "status")),
		AgentName: getS(item, "agent"),
		Data:      getB(item, "data"),
		CreatedAt: ms(getN(item, "createdAt")),
		UpdatedAt: ms(getN(item, "updatedAt")),
	}
}

// CreateSession implements state.Sessions.
func (st *Store) CreateSession(ctx context.Context, sess state.Session, out ...state.OutboxEvent) (state.Session, error) {
	if err := validateSession(sess); err != nil {
		return state.Session{}, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return state.Session{}, err
	}
	now := st.now().UnixMilli()
	item := key(sessionPK(sess.ID), skMeta)
	item["type"] = s("session")
	item["sid"] = s(sess.ID)
	item["version"] = n(1)
	item["status"] = s(string(sess.Status))
	item["agent"] = s(sess.AgentName)
	item["createdAt"] = n(now)
	item["updatedAt"] = n(now)
	setBytes(item, "data", sess.Data)
	idx := key(pkSessionsIdx, indexSK(now, sess.ID))
	idx["sid"] = s(sess.ID)
	// A redelivered AgentRequested finds its session: skip the transaction
	// known to fail (see OpenStep).
	if cur, err := st.get(ctx, sessionPK(sess.ID), skMeta); err != nil {
		return state.Session{}, fmt.Errorf("create session %q: %w", sess.ID, err)
	} else if cur != nil {
		return state.Session{}, fmt.Errorf("create session %q: conditional write: %w", sess.ID, state.ErrConflict)
	}
	err := retryTx(ctx, func() error {
		return st.write(ctx, []types.TransactWriteItem{
			{Put: &types.Put{TableName: &st.table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
			{Put: &types.Put{TableName: &st.table, Item: idx}},
		}, out)
	})
	if err != nil {
		return state.Session{}, fmt.Errorf("create session %q: %w", sess.ID, err)
	}
	sess.Version = 1
	sess.CreatedAt, sess.UpdatedAt = ms(now), ms(now)
	return sess, nil
}

// GetSession implements state.Sessions.
func (st *Store) GetSession(ctx context.Context, id string) (state.Session, error) {
	if err := state.ValidateSessionID(id); err != nil {
		return state.Session{}, err
	}
	item, err := st.get(ctx, sessionPK(id), skMeta)
	if err != nil {
		return state.Session{}, err
	}
	if item == nil {
		return state.Session{}, fmt.Errorf("session %q: %w", id, state.ErrNotFound)
	}
	return sessionFromItem(item), nil
}

// UpdateSession implements state.Sessions.
func (st *Store) UpdateSession(ctx context.Context, sess state.Session, out ...state.OutboxEvent) (state.Session, error) {
	if err := validateSession(sess); err != nil {
		return state.Session{}, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return state.Session{}, err
	}
	defer st.lockSession(sess.ID)()
	// Read first: it tells a missing session from a stale version, and
	// gives CreatedAt (a transaction returns no values).
	cur, err := st.GetSession(ctx, sess.ID)
	if err != nil {
		return state.Session{}, fmt.Errorf("update: %w", err)
	}
	if cur.Version != sess.Version {
		return state.Session{}, fmt.Errorf("update session %q at version %d, stored %d: %w", sess.ID, sess.Version, cur.Version, state.ErrConflict)
	}
	now := st.now().UnixMilli()
	expr := "SET #st = :st, #agent = :agent, #version = :new, #updated = :now"
	vals := map[string]types.AttributeValue{
		":st": s(string(sess.Status)), ":agent": s(sess.AgentName), ":new": n(sess.Version + 1),
		":now": n(now), ":old": n(sess.Version),
	}
	if len(sess.Data) > 0 {
		expr += ", #data = :data"
		vals[":data"] = b(sess.Data)
	} else {
		expr += " REMOVE #data"
	}
	err = retryTx(ctx, func() error {
		return st.write(ctx, []types.TransactWriteItem{{Update: &types.Update{
			TableName: &st.table, Key: key(sessionPK(sess.ID), skMeta),
			UpdateExpression:          aws.String(expr),
			ConditionExpression:       aws.String("#version = :old"),
			ExpressionAttributeNames:  map[string]string{"#st": "status", "#data": "data", "#agent": "agent", "#version": "version", "#updated": "updatedAt"},
			ExpressionAttributeValues: vals,
		}}}, out)
	})
	if errors.Is(err, state.ErrConflict) {
		if _, gerr := st.GetSession(ctx, sess.ID); errors.Is(gerr, state.ErrNotFound) {
			return state.Session{}, fmt.Errorf("update: %w", gerr)
		}
	}
	if err != nil {
		return state.Session{}, fmt.Errorf("update session %q: %w", sess.ID, err)
	}
	sess.Version++
	sess.CreatedAt = cur.CreatedAt
	sess.UpdatedAt = ms(now)
	return sess, nil
}

// ListSessions implements state.Sessions: a query of the SESSIONS index
// partition (newest first), then a BatchGetItem of the records.
func (st *Store) ListSessions(ctx context.Context, cursor string, limit int) (state.SessionPage, error) {
	limit = state.PageSize(limit)
	in := &dynamodb.QueryInput{
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s(pkSessionsIdx)},
		ScanIndexForward:          aws.Bool(false),
	}
	if cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || !strings.Contains(string(raw), "#") {
			return state.SessionPage{}, fmt.Errorf("%w: malformed cursor", state.ErrInvalid)
		}
		in.ExclusiveStartKey = key(pkSessionsIdx, string(raw))
	}
	// One more than asked tells whether there is a next page.
	idx, err := st.queryAll(ctx, in, limit+1)
	if err != nil {
		return state.SessionPage{}, fmt.Errorf("list sessions: %w", err)
	}
	var page state.SessionPage
	if len(idx) > limit {
		idx = idx[:limit]
		page.Next = base64.RawURLEncoding.EncodeToString([]byte(getS(idx[limit-1], attrSK)))
	}
	ids := make([]string, len(idx))
	for i, it := range idx {
		ids[i] = getS(it, "sid")
	}
	byID, err := st.batchGetSessions(ctx, ids)
	if err != nil {
		return state.SessionPage{}, fmt.Errorf("list sessions: %w", err)
	}
	for _, id := range ids {
		// An index row without its record is a session being deleted.
		if sess, ok := byID[id]; ok {
			page.Sessions = append(page.Sessions, sess)
		}
	}
	return page, nil
}

func (st *Store) batchGetSessions(ctx context.Context, ids []string) (map[string]state.Session, error) {
	res := make(map[string]state.Session, len(ids))
	for chunk := range slices.Chunk(ids, 100) {
		keys := make([]map[string]types.AttributeValue, len(chunk))
		for i, id := range chunk {
			keys[i] = key(sessionPK(id), skMeta)
		}
		req := map[string]types.KeysAndAttributes{st.table: {Keys: keys, ConsistentRead: aws.Bool(true)}}
		for i := 0; len(req) > 0; i++ {
			out, err := st.api.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return nil, fmt.Errorf("dynamodb batch get: %w", err)
			}
			for _, item := range out.Responses[st.table] {
				sess := sessionFromItem(item)
				res[sess.ID] = sess
			}
			req = out.UnprocessedKeys
			if len(req) > 0 {
				if i >= maxAttempts {
					return nil, errors.New("dynamodb batch get: unprocessed keys after retries")
				}
				if err := backoff(ctx, i); err != nil {
					return nil, err
				}
			}
		}
	}
	return res, nil
}

// DeleteSession implements state.Sessions. The index row goes first and the
// record last, so that a retry after a crash still finds what is left.
func (st *Store) DeleteSession(ctx context.Context, id string) error {
	if err := state.ValidateSessionID(id); err != nil {
		return err
	}
	meta, err := st.get(ctx, sessionPK(id), skMeta)
	if err != nil {
		return fmt.Errorf("delete session %q: %w", id, err)
	}
	var keys []map[string]types.AttributeValue
	if meta != nil {
		keys = append(keys, key(pkSessionsIdx, indexSK(getN(meta, "createdAt"), id)))
	}
	items, err := st.queryAll(ctx, &dynamodb.QueryInput{
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s(sessionPK(id))},
		ProjectionExpression:      aws.String("#pk, #sk"),
		ExpressionAttributeNames:  map[string]string{"#pk": attrPK, "#sk": attrSK},
	}, 0)
	if err != nil {
		return fmt.Errorf("delete session %q: %w", id, err)
	}
	for _, it := range items {
		if getS(it, attrSK) != skMeta {
			keys = append(keys, key(getS(it, attrPK), getS(it, attrSK)))
		}
	}
	if meta != nil {
		keys = append(keys, key(sessionPK(id), skMeta))
	}
	if err := st.batchDelete(ctx, keys); err != nil {
		return fmt.Errorf("delete session %q: %w", id, err)
	}
	return nil
}

// batchDelete deletes keys in order, 25 per BatchWriteItem, retrying
// unprocessed ones.
func (st *Store) batchDelete(ctx context.Context, keys []map[string]types.AttributeValue) error {
	for chunk := range slices.Chunk(keys, 25) {
		reqs := make([]types.WriteRequest, len(chunk))
		for i, k := range chunk {
			reqs[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: k}}
		}
		req := map[string][]types.WriteRequest{st.table: reqs}
		for i := 0; len(req) > 0; i++ {
			out, err := st.api.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: req})
			if err != nil {
				return fmt.Errorf("dynamodb batch write: %w", err)
			}
			req = out.UnprocessedItems
			if len(req) > 0 {
				if i >= maxAttempts {
					return errors.New("dynamodb batch write: unprocessed items after retries")
				}
				if err := backoff(ctx, i); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ---- history

func validateEntry(e state.Entry) error {
	if err := state.ValidateID("entry source", e.Source); err != nil {
		return err
	}
	return state.ValidateID("entry id", e.ID)
}

// AppendHistory implements state.History. Each chunk of entries is one
// transaction: the per-session sequence counter moves from the value read
// (conditional), and each entry's dedupe row must not exist. A transaction
// lost to a concurrent appender is retried from a fresh read.
//
// Each call marks its dedupe rows with a random token: when a transaction
// succeeded but its response was lost and the SDK's retry then failed its
// conditions (DynamoDB answers a retry with the same ClientRequestToken as
// a success; moto does not), the fresh read finds the rows this call wrote
// and counts them as added, not as duplicates.
func (st *Store) AppendHistory(ctx context.Context, sessionID string, entries ...state.Entry) (int, error) {
	if err := state.ValidateSessionID(sessionID); err != nil {
		return 0, err
	}
	for _, e := range entries {
		if err := validateEntry(e); err != nil {
			return 0, err
		}
	}
	// Drop repeats within the call; offload large entries once.
	seen := map[string]bool{}
	var uniq []state.Entry
	refs := map[string]string{}
	for _, e := range entries {
		d := dedupeSK(e.Source, e.ID)
		if seen[d] {
			continue
		}
		seen[d] = true
		uniq = append(uniq, e)
		if len(e.Data) > state.MaxInlineValue {
			if st.blobs == nil {
				return 0, fmt.Errorf("history entry %s/%s of %d bytes and no blob store: %w", e.Source, e.ID, len(e.Data), state.ErrTooLarge)
			}
			k := historyBlobKey(sessionID, e.Source, e.ID)
			if err := st.blobs.Put(ctx, k, e.Data); err != nil {
				return 0, fmt.Errorf("offload history entry %s/%s: %w", e.Source, e.ID, err)
			}
			refs[d] = k
		}
	}
	defer st.lockSession(sessionID)()
	writer := strconv.FormatUint(rand.Uint64(), 16)
	added := 0
	for _, chunk := range chunkEntries(uniq, refs, st.txBudget) {
		n, err := st.appendChunk(ctx, sessionID, writer, chunk, refs)
		added += n
		if err != nil {
			return added, fmt.Errorf("append history %q: %w", sessionID, err)
		}
	}
	return added, nil
}

// chunkEntries splits entries into transactions of at most 40 entries
// (2 items each, plus the counter) and budget inline bytes.
func chunkEntries(entries []state.Entry, refs map[string]string, budget int) [][]state.Entry {
	var (
		chunks [][]state.Entry
		cur    []state.Entry
		size   int
	)
	for _, e := range entries {
		sz := len(e.Data)
		if refs[dedupeSK(e.Source, e.ID)] != "" {
			sz = 0
		}
		if len(cur) > 0 && (len(cur) == 40 || size+sz > budget) {
			chunks = append(chunks, cur)
			cur, size = nil, 0
		}
		cur = append(cur, e)
		size += sz
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks
}

func (st *Store) appendChunk(ctx context.Context, sessionID, writer string, entries []state.Entry, refs map[string]string) (int, error) {
	pk := sessionPK(sessionID)
	for attempt := range maxAttempts {
		counter, err := st.get(ctx, pk, skHistSeq)
		if err != nil {
			return 0, err
		}
		last := getN(counter, "last")
		existing, err := st.existingKeys(ctx, pk, entries)
		if err != nil {
			return 0, err
		}
		var items []types.TransactWriteItem
		seq, mine := last, 0
		for _, e := range entries {
			d := dedupeSK(e.Source, e.ID)
			if w, ok := existing[d]; ok {
				if w == writer {
					mine++ // written by this call's transaction whose answer was lost
				}
				continue
			}
			seq++
			dd := key(pk, d)
			dd["seq"] = n(seq)
			dd["w"] = s(writer)
			items = append(items, types.TransactWriteItem{Put: &types.Put{TableName: &st.table, Item: dd,
				ConditionExpression: aws.String("attribute_not_exists(pk)")}})
			it := key(pk, histSK(seq))
			it["seq"] = n(seq)
			it["source"] = s(e.Source)
			it["eid"] = s(e.ID)
			if e.Type != "" {
				it["etype"] = s(e.Type)
			}
			if !e.Time.IsZero() {
				it["time"] = n(e.Time.UnixMilli())
			}
			if ref := refs[d]; ref != "" {
				it["ref"] = s(ref)
			} else {
				setBytes(it, "data", e.Data)
			}
			items = append(items, types.TransactWriteItem{Put: &types.Put{TableName: &st.table, Item: it}})
		}
		if len(items) == 0 {
			return mine, nil
		}
		upd := &types.Update{
			TableName: &st.table, Key: key(pk, skHistSeq),
			UpdateExpression:          aws.String("SET #last = :new"),
			ExpressionAttributeNames:  map[string]string{"#last": "last"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":new": n(seq)},
		}
		if counter == nil {
			upd.ConditionExpression = aws.String("attribute_not_exists(pk)")
		} else {
			upd.ConditionExpression = aws.String("#last = :old")
			upd.ExpressionAttributeValues[":old"] = n(last)
		}
		items = append(items, types.TransactWriteItem{Update: upd})
		_, err = st.api.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
		if err == nil {
			return int(seq-last) + mine, nil
		}
		if !isCondFailed(err) && !isTxConflict(err) {
			return 0, fmt.Errorf("dynamodb transact: %w", err)
		}
		if err := backoff(ctx, attempt); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("append lost to concurrent appenders %d times: %w", maxAttempts, state.ErrConflict)
}

// existingKeys returns the entries' dedupe rows that exist, each with the
// token of the call that wrote it ("" for rows written before tokens).
func (st *Store) existingKeys(ctx context.Context, pk string, entries []state.Entry) (map[string]string, error) {
	keys := make([]map[string]types.AttributeValue, len(entries))
	for i, e := range entries {
		keys[i] = key(pk, dedupeSK(e.Source, e.ID))
	}
	found := map[string]string{}
	req := map[string]types.KeysAndAttributes{st.table: {Keys: keys, ConsistentRead: aws.Bool(true),
		ProjectionExpression: aws.String("#sk, #w"), ExpressionAttributeNames: map[string]string{"#sk": attrSK, "#w": "w"}}}
	for i := 0; len(req) > 0; i++ {
		out, err := st.api.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
		if err != nil {
			return nil, fmt.Errorf("dynamodb batch get: %w", err)
		}
		for _, it := range out.Responses[st.table] {
			found[getS(it, attrSK)] = getS(it, "w")
		}
		req = out.UnprocessedKeys
		if len(req) > 0 {
			if i >= maxAttempts {
				return nil, errors.New("dynamodb batch get: unprocessed keys after retries")
			}
			if err := backoff(ctx, i); err != nil {
				return nil, err
			}
		}
	}
	return found, nil
}

func (st *Store) entryFromItem(ctx context.Context, item map[string]types.AttributeValue) (state.Entry, error) {
	e := state.Entry{
		Seq:    getN(item, "seq"),
		Source: getS(item, "source"),
		ID:     getS(item, "eid"),
		Type:   getS(item, "etype"),
		Data:   getB(item, "data"),
	}
	if t := getN(item, "time"); t != 0 {
		e.Time = ms(t)
	}
	if ref := getS(item, "ref"); ref != "" {
		if st.blobs == nil {
			return e, fmt.Errorf("history entry %d is offloaded to %q and no blob store is configured", e.Seq, ref)
		}
		data, err := st.blobs.Get(ctx, ref)
		if err != nil {
			return e, fmt.Errorf("read offloaded history entry %d: %w", e.Seq, err)
		}
		e.Data = data
	}
	if e.Data == nil {
		e.Data = []byte{}
	}
	return e, nil
}

// ReadHistory implements state.History.
func (st *Store) ReadHistory(ctx context.Context, sessionID string, afterSeq int64, limit int) ([]state.Entry, error) {
	if err := state.ValidateSessionID(sessionID); err != nil {
		return nil, err
	}
	if afterSeq < 0 {
		afterSeq = 0
	}
	items, err := st.queryAll(ctx, &dynamodb.QueryInput{
		KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :from AND :to"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": s(sessionPK(sessionID)), ":from": s(histSK(afterSeq + 1)), ":to": s(maxSeqSK),
		},
	}, state.PageSize(limit))
	if err != nil {
		return nil, fmt.Errorf("read history %q: %w", sessionID, err)
	}
	out := make([]state.Entry, 0, len(items))
	for _, it := range items {
		e, err := st.entryFromItem(ctx, it)
		if err != nil {
			return nil, fmt.Errorf("read history %q: %w", sessionID, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// SearchHistory implements state.History: it pages through the session's
// entries newest first and matches in Go (DynamoDB's contains() is
// case-sensitive and cannot see offloaded entries).
func (st *Store) SearchHistory(ctx context.Context, sessionID, query string, limit int) ([]state.Entry, error) {
	search, err := state.NewSearch(sessionID, query, limit)
	if err != nil {
		return nil, err
	}
	in := &dynamodb.QueryInput{
		TableName:              &st.table,
		ConsistentRead:         aws.Bool(true),
		KeyConditionExpression: aws.String("pk = :pk AND sk BETWEEN :from AND :to"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": s(sessionPK(sessionID)), ":from": s(histSK(1)), ":to": s(maxSeqSK),
		},
		ScanIndexForward: aws.Bool(false),
	}
	var out []state.Entry
	for {
		page, err := st.api.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("search history %q: dynamodb query: %w", sessionID, err)
		}
		for _, it := range page.Items {
			e, err := st.entryFromItem(ctx, it)
			if err != nil {
				return nil, fmt.Errorf("search history %q: %w", sessionID, err)
			}
			if search.Match(e) {
				out = append(out, e)
				if len(out) == search.Limit {
					return out, nil
				}
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// ---- claims

type storedClaim struct {
	c   *state.Claim
	rev int64
}

func (st *Store) readClaim(ctx context.Context, sessionID, k string) (storedClaim, error) {
	item, err := st.get(ctx, sessionPK(sessionID), claimSK(k))
	if err != nil || item == nil {
		return storedClaim{}, err
	}
	return storedClaim{rev: getN(item, "rev"), c: &state.Claim{
		SessionID:  sessionID,
		Key:        k,
		State:      state.ClaimState(getS(item, "state")),
		Holder:     getS(item, "holder"),
		Attempt:    int(getN(item, "attempt")),
		LeaseUntil: ms(getN(item, "leaseUntil")),
		ExpiresAt:  ms(getN(item, "expiresAtMs")),
		Result:     getB(item, "result"),
	}}, nil
}

// claimPut writes c as revision cur.rev+1, conditional on the stored
// revision still being cur.rev (or on no item, if there was none).
func (st *Store) claimPut(c state.Claim, cur storedClaim) types.TransactWriteItem {
	item := key(sessionPK(c.SessionID), claimSK(c.Key))
	item["type"] = s("claim")
	item["state"] = s(string(c.State))
	item["holder"] = s(c.Holder)
	item["attempt"] = n(int64(c.Attempt))
	item["leaseUntil"] = n(c.LeaseUntil.UnixMilli())
	item["expiresAtMs"] = n(c.ExpiresAt.UnixMilli())
	// TTL is in epoch seconds; round up so the item never disappears before
	// the claim expires.
	item[attrExpiresAt] = n((c.ExpiresAt.UnixMilli() + 999) / 1000)
	item["rev"] = n(cur.rev + 1)
	setBytes(item, "result", c.Result)
	put := &types.Put{TableName: &st.table, Item: item}
	if cur.c == nil {
		put.ConditionExpression = aws.String("attribute_not_exists(pk)")
	} else {
		put.ConditionExpression = aws.String("#rev = :rev")
		put.ExpressionAttributeNames = map[string]string{"#rev": "rev"}
		put.ExpressionAttributeValues = map[string]types.AttributeValue{":rev": n(cur.rev)}
	}
	return types.TransactWriteItem{Put: put}
}

// casClaim reads the claim, lets decide compute the next one, and writes
// it conditionally on the revision read, retrying when another writer got
// in between. decide returns write=false to stop without writing.
func (st *Store) casClaim(ctx context.Context, sessionID, k string, out []state.OutboxEvent,
	decide func(cur *state.Claim) (next state.Claim, write bool, err error)) (state.Claim, error) {
	for attempt := range maxAttempts {
		cur, err := st.readClaim(ctx, sessionID, k)
		if err != nil {
			return state.Claim{}, err
		}
		next, write, err := decide(cur.c)
		if err != nil || !write {
			return next, err
		}
		err = st.write(ctx, []types.TransactWriteItem{st.claimPut(next, cur)}, out)
		if err == nil {
			return next, nil
		}
		if !errors.Is(err, state.ErrConflict) && !errors.Is(err, errTxConflict) {
			return state.Claim{}, err
		}
		if err := backoff(ctx, attempt); err != nil {
			return state.Claim{}, err
		}
	}
	return state.Claim{}, fmt.Errorf("claim %q contended %d times: %w", k, maxAttempts, state.ErrConflict)
}

// Claim implements state.Claims.
func (st *Store) Claim(ctx context.Context, req state.ClaimRequest) (state.Claim, bool, error) {
	if err := state.ValidateClaimRequest(req); err != nil {
		return state.Claim{}, false, err
	}
	var acquired bool
	c, err := st.casClaim(ctx, req.SessionID, req.Key, nil, func(cur *state.Claim) (state.Claim, bool, error) {
		next, acq, write := rules.Claim(cur, req, st.now())
		acquired = acq
		return next, write, nil
	})
	if err != nil {
		return state.Claim{}, false, fmt.Errorf("claim %q: %w", req.Key, err)
	}
	return c, acquired, nil
}

// RenewClaim implements state.Claims.
func (st *Store) RenewClaim(ctx context.Context, sessionID, k, holder string, lease time.Duration) (state.Claim, error) {
	if err := state.ValidateClaimKey(sessionID, k, holder); err != nil {
		return state.Claim{}, err
	}
	return st.casClaim(ctx, sessionID, k, nil, func(cur *state.Claim) (state.Claim, bool, error) {
		next, err := rules.Renew(cur, holder, lease, st.now())
		return next, err == nil, err
	})
}

// CompleteClaim implements state.Claims.
func (st *Store) CompleteClaim(ctx context.Context, sessionID, k, holder string, result []byte, out ...state.OutboxEvent) (state.Claim, error) {
	if err := state.ValidateClaimKey(sessionID, k, holder); err != nil {
		return state.Claim{}, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return state.Claim{}, err
	}
	return st.casClaim(ctx, sessionID, k, out, func(cur *state.Claim) (state.Claim, bool, error) {
		return rules.Complete(cur, holder, result, st.now())
	})
}

// CompleteUnclaimed implements state.Claims.
func (st *Store) CompleteUnclaimed(ctx context.Context, sessionID, k, holder string, ttl time.Duration, result []byte, out ...state.OutboxEvent) (state.Claim, bool, error) {
	if err := state.ValidateClaimKey(sessionID, k, holder); err != nil {
		return state.Claim{}, false, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return state.Claim{}, false, err
	}
	var stored bool
	c, err := st.casClaim(ctx, sessionID, k, out, func(cur *state.Claim) (state.Claim, bool, error) {
		next, write, err := rules.CompleteUnclaimed(cur, sessionID, k, holder, ttl, result, st.now())
		stored = write
		return next, write, err
	})
	if err != nil {
		return state.Claim{}, false, err
	}
	return c, stored, nil
}

// GetClaim implements state.Claims.
func (st *Store) GetClaim(ctx context.Context, sessionID, k string) (state.Claim, error) {
	if err := state.ValidateSessionID(sessionID); err != nil {
		return state.Claim{}, err
	}
	if err := state.ValidateID("claim key", k); err != nil {
		return state.Claim{}, err
	}
	cur, err := st.readClaim(ctx, sessionID, k)
	if err != nil {
		return state.Claim{}, err
	}
	if !rules.Live(cur.c, rules.Millis(st.now())) {
		return state.Claim{}, fmt.Errorf("claim %q: %w", k, state.ErrNotFound)
	}
	return *cur.c, nil
}

// ---- fan-in

func validateStep(k state.StepKey) error {
	if err := state.ValidateSessionID(k.SessionID); err != nil {
		return err
	}
	if k.Step < 0 {
		return fmt.Errorf("%w: negative step %d", state.ErrInvalid, k.Step)
	}
	return nil
}

// readStep reads the step's header and result rows with one consistent
// query (the header sorts first: its sort key is the results' prefix).
func (st *Store) readStep(ctx context.Context, k state.StepKey) (state.StepState, error) {
	items, err := st.queryAll(ctx, &dynamodb.QueryInput{
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :step)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": s(sessionPK(k.SessionID)), ":step": s(stepSK(k.Step)),
		},
	}, 0)
	if err != nil {
		return state.StepState{}, fmt.Errorf("read step %v: %w", k, err)
	}
	res := state.StepState{Key: k}
	header, prefix := stepSK(k.Step), stepSK(k.Step)+"#CALL#"
	for _, it := range items {
		sk := getS(it, attrSK)
		switch {
		case sk == header:
			res.Done = getBool(it, "done")
			if l, ok := it["expected"].(*types.AttributeValueMemberL); ok {
				res.Expected = make([]string, 0, len(l.Value))
				for _, v := range l.Value {
					if sv, ok := v.(*types.AttributeValueMemberS); ok {
						res.Expected = append(res.Expected, sv.Value)
					}
				}
			}
		case strings.HasPrefix(sk, prefix):
			r := getB(it, "result")
			if r == nil {
				r = []byte{}
			}
			res.Results = append(res.Results, state.CallResult{CallID: getS(it, "callId"), Result: r})
		}
	}
	sort.Slice(res.Results, func(i, j int) bool { return res.Results[i].CallID < res.Results[j].CallID })
	return res, nil
}

// OpenStep implements state.FanIn: an upsert of the step header that sets
// `expected` only if it is not set yet.
func (st *Store) OpenStep(ctx context.Context, k state.StepKey, callIDs []string, out ...state.OutboxEvent) (state.StepState, bool, error) {
	if err := validateStep(k); err != nil {
		return state.StepState{}, false, err
	}
	ids, err := state.NormaliseCallIDs(callIDs)
	if err != nil {
		return state.StepState{}, false, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return state.StepState{}, false, err
	}
	defer st.lockSession(k.SessionID)()
	// A step already opened (a redelivered StepPlanned, e.g. the executor's
	// timeout check) would fail the transaction's condition. Reading first
	// skips a transaction that is known to fail: it saves the write
	// capacity a failed transaction still costs, and on moto a failed
	// transaction restores the whole table (docs/moto-differences.md D3).
	if cur, err := st.readStep(ctx, k); err != nil {
		return state.StepState{}, false, err
	} else if len(cur.Expected) > 0 {
		return cur, false, nil
	}
	list := make([]types.AttributeValue, len(ids))
	for i, id := range ids {
		list[i] = s(id)
	}
	err = retryTx(ctx, func() error {
		return st.write(ctx, []types.TransactWriteItem{{Update: &types.Update{
			TableName: &st.table, Key: key(sessionPK(k.SessionID), stepSK(k.Step)),
			UpdateExpression:          aws.String("SET #expected = :e, #type = :t"),
			ConditionExpression:       aws.String("attribute_not_exists(#expected)"),
			ExpressionAttributeNames:  map[string]string{"#type": "type", "#expected": "expected"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":e": &types.AttributeValueMemberL{Value: list}, ":t": s("step")},
		}}}, out)
	})
	opened := err == nil
	if err != nil && !errors.Is(err, state.ErrConflict) {
		return state.StepState{}, false, fmt.Errorf("open step %v: %w", k, err)
	}
	stt, err := st.readStep(ctx, k)
	if err != nil {
		return state.StepState{}, false, err
	}
	return stt, opened, nil
}

// RecordResult implements state.FanIn.
func (st *Store) RecordResult(ctx context.Context, k state.StepKey, callID string, result []byte) (state.StepState, error) {
	if err := validateStep(k); err != nil {
		return state.StepState{}, err
	}
	if err := state.ValidateID("call id", callID); err != nil {
		return state.StepState{}, err
	}
	if len(result) > state.MaxInlineValue {
		return state.StepState{}, fmt.Errorf("call result of %d bytes, max %d: %w", len(result), state.MaxInlineValue, state.ErrTooLarge)
	}
	item := key(sessionPK(k.SessionID), resultSK(k.Step, callID))
	item["type"] = s("result")
	item["callId"] = s(callID)
	setBytes(item, "result", result)
	_, err := st.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: &st.table, Item: item, ConditionExpression: aws.String("attribute_not_exists(pk)"),
	})
	if err != nil && !isCondFailed(err) {
		return state.StepState{}, fmt.Errorf("record result %v/%s: %w", k, callID, err)
	}
	return st.readStep(ctx, k)
}

// RecordAndComplete implements state.FanIn as RecordResult then, when the
// step is complete, CompleteStep: two writes (a transaction could not read
// the results it needs to build the events).
func (st *Store) RecordAndComplete(ctx context.Context, k state.StepKey, callID string, result []byte, complete func(state.StepState) ([]state.OutboxEvent, error)) (state.StepState, bool, error) {
	stt, err := st.RecordResult(ctx, k, callID, result)
	if err != nil || stt.Done || !stt.AllIn() {
		return stt, false, err
	}
	out, err := complete(stt)
	if err != nil {
		return state.StepState{}, false, err
	}
	first, err := st.CompleteStep(ctx, k, out...)
	if err != nil {
		return state.StepState{}, false, err
	}
	stt.Done = true // by this call or a concurrent one
	return stt, first, nil
}

// CompleteStep implements state.FanIn: an upsert of the step header that
// sets `done` only if it is not set yet.
func (st *Store) CompleteStep(ctx context.Context, k state.StepKey, out ...state.OutboxEvent) (bool, error) {
	if err := validateStep(k); err != nil {
		return false, err
	}
	if err := state.ValidateOutbox(out); err != nil {
		return false, err
	}
	// Fan-in: every result's handler tries to complete the step; all but
	// one lose. Skip the transaction known to fail (see OpenStep).
	defer st.lockSession(k.SessionID)()
	if cur, err := st.readStep(ctx, k); err != nil {
		return false, fmt.Errorf("complete step %v: %w", k, err)
	} else if cur.Done {
		return false, nil
	}
	err := retryTx(ctx, func() error {
		return st.write(ctx, []types.TransactWriteItem{{Update: &types.Update{
			TableName: &st.table, Key: key(sessionPK(k.SessionID), stepSK(k.Step)),
			UpdateExpression:          aws.String("SET #done = :t, #type = :ty"),
			ConditionExpression:       aws.String("attribute_not_exists(#done)"),
			ExpressionAttributeNames:  map[string]string{"#type": "type", "#done": "done"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":t": boolean(true), ":ty": s("step")},
		}}}, out)
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, state.ErrConflict):
		return false, nil
	}
	return false, fmt.Errorf("complete step %v: %w", k, err)
}

// ---- outbox

// PendingOutbox implements state.Outbox (ordered by id).
func (st *Store) PendingOutbox(ctx context.Context, limit int) ([]state.OutboxEvent, error) {
	items, err := st.queryAll(ctx, &dynamodb.QueryInput{
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": s(pkOutbox)},
	}, state.PageSize(limit))
	if err != nil {
		return nil, fmt.Errorf("pending outbox: %w", err)
	}
	out := make([]state.OutboxEvent, 0, len(items))
	for _, it := range items {
		e := state.OutboxEvent{ID: getS(it, attrSK), Payload: getB(it, "payload")}
		if ref := getS(it, "ref"); ref != "" {
			if st.blobs == nil {
				return nil, fmt.Errorf("pending outbox: event %q is offloaded to %q and no blob store is configured", e.ID, ref)
			}
			if e.Payload, err = st.blobs.Get(ctx, ref); err != nil {
				return nil, fmt.Errorf("pending outbox: read offloaded event %q: %w", e.ID, err)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// MarkSent implements state.Outbox: the rows are deleted.
func (st *Store) MarkSent(ctx context.Context, ids ...string) error {
	keys := make([]map[string]types.AttributeValue, 0, len(ids))
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			continue // BatchWriteItem rejects duplicate keys
		}
		seen[id] = true
		keys = append(keys, key(pkOutbox, id))
	}
	if err := st.batchDelete(ctx, keys); err != nil {
		return fmt.Errorf("mark sent: %w", err)
	}
	return nil
}
