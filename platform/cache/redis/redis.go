// Package redis is the cache.Cache on Redis (ElastiCache in AWS mode), with
// go-redis v9.
//
// Per session it keeps two keys, both under the configured prefix and with
// the session id as the cluster hash tag so a script can touch both:
//
//	<prefix>{<sessionid>}:ctx  a list: a header "h:<last seq>" then one
//	                           element per entry (8-byte big-endian Seq, data);
//	                           its TTL is the session's TTL
//	<prefix>{<sessionid>}:ver  the slot's Version; lives an hour past the
//	                           TTL so late fills are still refused
//
// Every read and write is one Lua script, so each is atomic. Versions are
// derived from the server clock (microseconds, and always above the previous
// one), so a Version is not reused after its key expires. Seq values must be
// below 2^53 (Lua numbers are doubles).
//
// No IAM actions: ElastiCache access is by network (security groups) and,
// if enabled, Redis AUTH/ACL users; the client carries no AWS credentials.
package redis

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentbus/agentbus/platform/cache"
)

// Defaults for Options' zero values.
const (
	DefaultPrefix     = "agentbus:"
	DefaultMaxEntries = 64
	// versionGrace is how long a Version outlives its session's TTL.
	versionGrace = time.Hour
)

// Options configure a Cache.
type Options struct {
	// Prefix starts every key (default "agentbus:"); tests use a unique one.
	Prefix string
	// MaxEntries bounds the entries kept per session (the newest are kept).
	MaxEntries int
}

// Cache is a cache.Cache on Redis. Safe for concurrent use.
type Cache struct {
	client goredis.Scripter
	owned  *goredis.Client
	opts   Options
}

var _ cache.Cache = (*Cache)(nil)

// New connects to the Redis at addr (host:port). Close releases it.
func New(addr string, opts Options) (*Cache, error) {
	if addr == "" {
		return nil, errors.New("redis cache: empty address")
	}
	c := goredis.NewClient(&goredis.Options{
		Addr: addr,
		// Short timeouts: a slow cache is worse than none; the read-through
		// wrapper falls back to the durable store.
		DialTimeout:  time.Second,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
		MaxRetries:   1,
	})
	rc := NewFromClient(c, opts)
	rc.owned = c
	return rc, nil
}

// NewFromClient uses c (a *redis.Client, *redis.ClusterClient, ...), which
// the caller keeps owning.
func NewFromClient(c goredis.Scripter, opts Options) *Cache {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	return &Cache{client: c, opts: opts}
}

// Close closes the client New created; a no-op for NewFromClient.
func (c *Cache) Close() error {
	if c.owned != nil {
		return c.owned.Close()
	}
	return nil
}

func (c *Cache) keys(sessionID string) []string {
	base := c.opts.Prefix + "{" + sessionID + "}"
	return []string{base + ":ctx", base + ":ver"}
}

const luaBump = `
local function bump(vttl)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
  local nv = string.format('%d', math.max(cur + 1, now))
  redis.call('SET', KEYS[2], nv, 'PX', vttl)
  return nv
end
`

// getScript: returns {version, elements...}; elements[1] is the header when
// the session is cached, and the reply has only the version on a miss.
var getScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[2]) or '0'
local l = redis.call('LRANGE', KEYS[1], 0, -1)
table.insert(l, 1, v)
return l
`)

// fillScript: ARGV = token, ttl ms, version ttl ms, header, elements...
var fillScript = goredis.NewScript(luaBump + `
local v = redis.call('GET', KEYS[2]) or '0'
if v ~= ARGV[1] or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[4])
for i = 5, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
bump(ARGV[3])
return 1
`)

// appendScript: ARGV = ttl ms, version ttl ms, max entries, then pairs of
// (seq, element).
var appendScript = goredis.NewScript(luaBump + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  bump(ARGV[2])
  return 0
end
local h = redis.call('LINDEX', KEYS[1], 0)
local last = tonumber(string.sub(h, 3))
for i = 4, #ARGV, 2 do
  local s = tonumber(ARGV[i])
  if last == nil or s > last then
    redis.call('RPUSH', KEYS[1], ARGV[i + 1])
    last = s
  end
end
if last ~= nil then
  redis.call('LSET', KEYS[1], 0, 'h:' .. string.format('%d', last))
end
local extra = redis.call('LLEN', KEYS[1]) - 1 - tonumber(ARGV[3])
if extra > 0 then
  local head = redis.call('LPOP', KEYS[1])
  redis.call('LTRIM', KEYS[1], extra, -1)
  redis.call('LPUSH', KEYS[1], head)
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
bump(ARGV[2])
return 1
`)

// invalidateScript: ARGV = version ttl ms.
var invalidateScript = goredis.NewScript(luaBump + `
redis.call('DEL', KEYS[1])
bump(ARGV[1])
return 1
`)

func ms(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

func encode(e cache.Entry) []byte {
	b := make([]byte, 8+len(e.Data))
	binary.BigEndian.PutUint64(b, uint64(e.Seq))
	copy(b[8:], e.Data)
	return b
}

func header(es []cache.Entry) string {
	if len(es) == 0 {
		return "h:"
	}
	return "h:" + strconv.FormatInt(es[len(es)-1].Seq, 10)
}

// Get implements cache.Cache.
func (c *Cache) Get(ctx context.Context, sessionID string) ([]cache.Entry, bool, cache.Version, error) {
	if err := cache.CheckArgs(sessionID, 0, false); err != nil {
		return nil, false, 0, err
	}
	res, err := getScript.Run(ctx, c.client, c.keys(sessionID)).Slice()
	if err != nil {
		return nil, false, 0, fmt.Errorf("redis cache: get %q: %w", sessionID, err)
	}
	if len(res) == 0 {
		return nil, false, 0, fmt.Errorf("redis cache: get %q: empty reply", sessionID)
	}
	vs, _ := res[0].(string)
	v, err := strconv.ParseUint(vs, 10, 64)
	if err != nil {
		return nil, false, 0, fmt.Errorf("redis cache: get %q: bad version %q", sessionID, vs)
	}
	if len(res) == 1 { // no list: not cached
		return nil, false, cache.Version(v), nil
	}
	out := make([]cache.Entry, 0, len(res)-2)
	for _, el := range res[2:] {
		s, _ := el.(string)
		if len(s) < 8 {
			return nil, false, 0, fmt.Errorf("redis cache: get %q: corrupt entry of %d bytes", sessionID, len(s))
		}
		out = append(out, cache.Entry{Seq: int64(binary.BigEndian.Uint64([]byte(s[:8]))), Data: []byte(s[8:])})
	}
	return out, true, cache.Version(v), nil
}

// Fill implements cache.Cache.
func (c *Cache) Fill(ctx context.Context, sessionID string, v cache.Version, entries []cache.Entry, ttl time.Duration) (bool, error) {
	if err := cache.CheckArgs(sessionID, ttl, true); err != nil {
		return false, err
	}
	es := cache.AppendNewer(nil, entries, c.opts.MaxEntries)
	args := make([]any, 0, 4+len(es))
	args = append(args, strconv.FormatUint(uint64(v), 10), ms(ttl), ms(ttl+versionGrace), header(es))
	for _, e := range es {
		args = append(args, encode(e))
	}
	n, err := fillScript.Run(ctx, c.client, c.keys(sessionID), args...).Int()
	if err != nil {
		return false, fmt.Errorf("redis cache: fill %q: %w", sessionID, err)
	}
	return n == 1, nil
}

// Append implements cache.Cache.
func (c *Cache) Append(ctx context.Context, sessionID string, entries []cache.Entry, ttl time.Duration) error {
	if err := cache.CheckArgs(sessionID, ttl, true); err != nil {
		return err
	}
	args := make([]any, 0, 3+2*len(entries))
	args = append(args, ms(ttl), ms(ttl+versionGrace), c.opts.MaxEntries)
	for _, e := range entries {
		args = append(args, strconv.FormatInt(e.Seq, 10), encode(e))
	}
	if err := appendScript.Run(ctx, c.client, c.keys(sessionID), args...).Err(); err != nil {
		return fmt.Errorf("redis cache: append %q: %w", sessionID, err)
	}
	return nil
}

// Invalidate implements cache.Cache.
func (c *Cache) Invalidate(ctx context.Context, sessionID string) error {
	if err := cache.CheckArgs(sessionID, 0, false); err != nil {
		return err
	}
	if err := invalidateScript.Run(ctx, c.client, c.keys(sessionID), ms(versionGrace)).Err(); err != nil {
		return fmt.Errorf("redis cache: invalidate %q: %w", sessionID, err)
	}
	return nil
}
