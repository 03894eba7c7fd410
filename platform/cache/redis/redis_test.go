package redis_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/agentbus/agentbus/internal/testenv"
	"github.com/agentbus/agentbus/platform/cache"
	"github.com/agentbus/agentbus/platform/cache/cachetest"
	rediscache "github.com/agentbus/agentbus/platform/cache/redis"
)

func uniquePrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "agentbus-test:" + hex.EncodeToString(b[:]) + ":"
}

// newRedis returns a cache on the test Redis under a fresh prefix, and
// deletes the prefix's keys when the test ends.
func newRedis(t *testing.T, maxEntries int) *rediscache.Cache { return newRedisTB(t, maxEntries) }

func newRedisB(b *testing.B) *rediscache.Cache { return newRedisTB(b, 64) }

func newRedisTB(t testing.TB, maxEntries int) *rediscache.Cache {
	t.Helper()
	addr := testenv.RedisAddr(t)
	client := goredis.NewClient(&goredis.Options{Addr: addr})
	prefix := uniquePrefix()
	t.Cleanup(func() {
		defer client.Close()
		ctx := context.Background() // t.Context is already canceled here
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return rediscache.NewFromClient(client, rediscache.Options{Prefix: prefix, MaxEntries: maxEntries})
}

func TestConformance(t *testing.T) {
	t.Parallel()
	cachetest.Run(t, func(t *testing.T, maxEntries int) cache.Cache { return newRedis(t, maxEntries) })
}
