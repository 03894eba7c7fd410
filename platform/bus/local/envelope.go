package local

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// The publish hot path renders the EventBridge envelope itself instead of
// calling events.ToEnvelope + events.EnvelopeJSON: those go through
// json.Marshal, which re-scans (compacts) the whole CloudEvent twice, about
// half the CPU of a publish. The bytes are the same (envelope_test.go checks
// that against the events package).

// marshalDetail is the CloudEvent JSON that events.ToEnvelope puts in detail.
func marshalDetail(ev *event.Event) ([]byte, error) {
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("events: to envelope: %w", err)
	}
	b, err := ev.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("events: to envelope: marshal %s: %w", ev.Type(), err)
	}
	return b, nil
}

// appendEnvelope renders what events.EnvelopeJSON renders.
func appendEnvelope(dst []byte, source, detailType string, detail []byte, id string, t time.Time, account, region string) []byte {
	dst = append(dst, `{"version":"0","id":`...)
	dst = appendString(dst, id)
	dst = append(dst, `,"detail-type":`...)
	dst = appendString(dst, detailType)
	dst = append(dst, `,"source":`...)
	dst = appendString(dst, source)
	dst = append(dst, `,"account":`...)
	dst = appendString(dst, account)
	dst = append(dst, `,"time":"`...)
	dst = t.UTC().AppendFormat(dst, "2006-01-02T15:04:05Z")
	dst = append(dst, `","region":`...)
	dst = appendString(dst, region)
	dst = append(dst, `,"resources":[],"detail":`...)
	dst = append(dst, detail...)
	return append(dst, '}')
}

// appendString quotes s as encoding/json does (HTML-safe escaping); plain
// strings, the usual case, skip json.Marshal.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// idGen makes EventBridge-style event ids (UUID-shaped): a random prefix
// per bus and a counter, much cheaper than a random UUID per event.
type idGen struct {
	prefix string
	n      atomic.Uint64
}

func newIDGen() *idGen {
	var b [10]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return &idGen{prefix: h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-"}
}

func (g *idGen) next() string {
	n := g.n.Add(1) & 0xffffffffffff
	var buf [48]byte
	b := append(buf[:0], g.prefix...)
	s := strconv.AppendUint(buf[40:40], n, 16)
	for i := len(s); i < 12; i++ {
		b = append(b, '0')
	}
	b = append(b, s...)
	return string(b)
}
