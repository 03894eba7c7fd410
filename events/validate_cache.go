package events

import (
	"encoding/binary"
	"hash/maphash"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// Validation is a pure function of an event's content, and in one process
// the same content is validated several times: once by the publisher, then
// again by every queue's consumer that receives a copy. The Validator
// therefore remembers a fingerprint of each event that passed and answers a
// repeat at once. An event that failed is never remembered, so an invalid
// event that went around the publisher (SendRaw, a direct bus publish, a
// foreign producer) is still validated — and rejected with its reasons —
// wherever it arrives.
//
// The fingerprint is a 64-bit maphash, with a seed drawn at random per
// Validator, of every input of the event's JSON encoding (the one
// ValidateJSON checks): id, source, type, subject, datacontenttype,
// dataschema, time, data (and whether it is base64), and every extension
// with its value's type. Inputs that encode alike but differ (an extension
// given as a string or a number) get different fingerprints, which only
// costs a cache miss. With a secret seed and at most 2*validCacheSize
// fingerprints held, a false hit has a probability near 2^-50 per lookup.
// Written by hand because no library fingerprints a CloudEvent.

// validCacheSize is how many fingerprints one generation holds; two
// generations are kept, so a fingerprint survives at least this many newer
// ones (a publish and its deliveries are normally milliseconds apart).
const validCacheSize = 8192

// validCache is a bounded set of fingerprints: when the current generation
// is full it becomes the previous one and the old previous one is dropped.
type validCache struct {
	seed      maphash.Seed
	mu        sync.Mutex
	cur, prev map[uint64]struct{}
	size      int
}

func newValidCache(size int) *validCache {
	return &validCache{seed: maphash.MakeSeed(), cur: make(map[uint64]struct{}, size), size: size}
}

func (c *validCache) has(fp uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cur[fp]; ok {
		return true
	}
	_, ok := c.prev[fp]
	return ok
}

func (c *validCache) add(fp uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.cur) >= c.size {
		c.prev, c.cur = c.cur, make(map[uint64]struct{}, c.size)
	}
	c.cur[fp] = struct{}{}
}

// fingerprinter writes length-prefixed, tagged fields, so that no two
// different field sequences produce the same byte stream.
type fingerprinter struct{ h maphash.Hash }

func (f *fingerprinter) uint(n uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	_, _ = f.h.Write(b[:])
}

func (f *fingerprinter) str(s string) {
	f.uint(uint64(len(s)))
	_, _ = f.h.WriteString(s)
}

func (f *fingerprinter) bytes(b []byte) {
	f.uint(uint64(len(b)))
	_, _ = f.h.Write(b)
}

func (f *fingerprinter) optStr(p *string) {
	if p == nil {
		_ = f.h.WriteByte(0)
		return
	}
	_ = f.h.WriteByte(1)
	f.str(*p)
}

func (f *fingerprinter) time(t time.Time) {
	var buf [64]byte
	f.bytes(t.UTC().AppendFormat(buf[:0], time.RFC3339Nano))
}

// value writes an extension value tagged with its type; ok is false for a
// type this function does not know (the event is then not fingerprinted).
func (f *fingerprinter) value(v any) bool {
	switch v := v.(type) {
	case string:
		_ = f.h.WriteByte('s')
		f.str(v)
	case bool:
		_ = f.h.WriteByte('b')
		if v {
			_ = f.h.WriteByte(1)
		} else {
			_ = f.h.WriteByte(0)
		}
	case int32:
		_ = f.h.WriteByte('i')
		f.uint(uint64(int64(v)))
	case []byte:
		_ = f.h.WriteByte('y')
		f.bytes(v)
	case types.URI:
		_ = f.h.WriteByte('u')
		f.str(v.String())
	case types.URIRef:
		_ = f.h.WriteByte('r')
		f.str(v.String())
	case types.Timestamp:
		_ = f.h.WriteByte('t')
		f.time(v.Time)
	default:
		return false
	}
	return true
}

// fingerprint hashes every input of ev's JSON encoding (see above). ok is
// false for events it cannot fingerprint (not CloudEvents 1.0, unusual
// extension types): those are always validated in full.
func fingerprint(seed maphash.Seed, ev *event.Event) (uint64, bool) {
	ec, ok := ev.Context.(*event.EventContextV1)
	if !ok || ec == nil {
		return 0, false
	}
	var f fingerprinter
	f.h.SetSeed(seed)
	f.str(ec.ID)
	f.str(ec.Source.String())
	f.str(ec.Type)
	f.optStr(ec.Subject)
	f.optStr(ec.DataContentType)
	if ec.DataSchema == nil {
		_ = f.h.WriteByte(0)
	} else {
		_ = f.h.WriteByte(1)
		f.str(ec.DataSchema.String())
	}
	if ec.Time == nil {
		_ = f.h.WriteByte(0)
	} else {
		_ = f.h.WriteByte(1)
		f.time(ec.Time.Time)
	}
	if ev.DataBase64 {
		_ = f.h.WriteByte(1)
	} else {
		_ = f.h.WriteByte(0)
	}
	if ev.DataEncoded == nil {
		_ = f.h.WriteByte(0)
	} else {
		_ = f.h.WriteByte(1)
		f.bytes(ev.DataEncoded)
	}
	// Extensions: a map, so each entry is hashed on its own and the hashes
	// are summed (order-independent, no sort).
	var sum uint64
	var e fingerprinter
	for k, v := range ec.Extensions {
		e.h.SetSeed(seed)
		e.str(k)
		if !e.value(v) {
			return 0, false
		}
		sum += e.h.Sum64()
	}
	f.uint(uint64(len(ec.Extensions)))
	f.uint(sum)
	return f.h.Sum64(), true
}
