package pattern_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/agentbus/agentbus/platform/pattern"
)

// benchEvent is a ~900-byte event shaped like the corpus events (an
// EventBridge envelope around an order).
func benchEvent(i int) []byte {
	return fmt.Appendf(nil, `{"version":"0","id":"%08x-0000-4000-8000-%012x","detail-type":"T%d","source":"app.s%d",`+
		`"account":"123456789012","time":"2024-01-01T00:00:00Z","region":"us-east-1",`+
		`"resources":["arn:aws:ec2:us-east-1:123456789012:instance/i-%08x"],`+
		`"detail":{"orderId":%d,"total":%d.25,"customer":{"id":"c%d","tier":"gold","email":"user%d@example.com","ip":"10.%d.%d.7"},`+
		`"items":[{"sku":"SKU-%05d","qty":1,"price":9.5},{"sku":"SKU-%05d","qty":2,"price":19.5}],"note":"%s"}}`,
		i, i, i%20, i, i, i, i%1000, i, i, i%256, i/256%256, i%100000, (i+1)%100000, bytes.Repeat([]byte("x"), 300))
}

// benchRule is rule i of a set whose rules share field paths and mix
// operators: exact, prefix, suffix, numeric, cidr, wildcard,
// equals-ignore-case, anything-but (with an exact anchor), exists and $or.
func benchRule(i int) string {
	switch i % 10 {
	case 0:
		return fmt.Sprintf(`{"source":["app.s%d"],"detail-type":["T%d"]}`, i, i%20)
	case 1:
		return fmt.Sprintf(`{"resources":[{"prefix":"arn:aws:ec2:us-east-1:123456789012:instance/i-%08x"}]}`, i)
	case 2:
		return fmt.Sprintf(`{"detail":{"customer":{"email":[{"suffix":"r%d@example.com"}]}}}`, i)
	case 3:
		return fmt.Sprintf(`{"detail":{"orderId":[{"numeric":[">=",%d,"<",%d]}]}}`, i, i+1)
	case 4:
		return fmt.Sprintf(`{"detail":{"customer":{"ip":[{"cidr":"10.%d.%d.0/24"}]}}}`, i%256, i/256%256)
	case 5:
		return fmt.Sprintf(`{"resources":[{"wildcard":"arn:aws:ec2:us-east-1:*:instance/i-%08x"}]}`, i)
	case 6:
		return fmt.Sprintf(`{"detail":{"customer":{"id":[{"equals-ignore-case":"C%d"}]}}}`, i)
	case 7:
		return fmt.Sprintf(`{"source":["app.s%d"],"detail":{"customer":{"tier":[{"anything-but":["silver","bronze"]}]}}}`, i)
	case 8:
		return fmt.Sprintf(`{"detail":{"customer":{"id":["c%d"]},"note":[{"exists":true}]}}`, i)
	default:
		return fmt.Sprintf(`{"$or":[{"source":["app.s%d"]},{"detail":{"items":{"sku":["SKU-%05d"]}}}]}`, i, i%100000)
	}
}

// BenchmarkMatcherRules shows that match cost stays flat as the rule count
// grows: ns/event at 10,000 rules should stay within 5x of 10 rules.
func BenchmarkMatcherRules(b *testing.B) {
	for _, n := range []int{10, 100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			m := pattern.NewMatcher()
			for i := 0; i < n; i++ {
				if err := m.Add(fmt.Sprintf("r%05d", i), pattern.MustCompile(benchRule(i))); err != nil {
					b.Fatal(err)
				}
			}
			events := make([][]byte, 1000)
			for i := range events {
				events[i] = benchEvent(i * 7 % n)
			}
			matched := 0
			if _, err := m.Match(events[0]); err != nil { // build the index outside the timer
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				got, err := m.Match(events[i%len(events)])
				if err != nil {
					b.Fatal(err)
				}
				matched += len(got)
			}
			if cpu := cpuTime() - cpu0; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/event")
			}
			b.ReportMetric(float64(matched)/float64(b.N), "matches/event")
		})
	}
}

// corpusKinds are the operator kinds gen_pattern_corpus.py writes rules for.
var corpusKinds = []string{"exact", "prefix", "suffix", "numeric", "anything-but", "wildcard", "cidr", "or", "array"}

// BenchmarkCorpus measures events/s per operator kind, JSON parsing
// included, on the shared side-by-side corpus (900-byte events, 5 rules per
// kind), the same workload event-ruler's figures were measured on.
func BenchmarkCorpus(b *testing.B) {
	script := filepath.Join("..", "..", "..", "shared", "bench", "gen_pattern_corpus.py")
	if _, err := os.Stat(script); err != nil {
		b.Skipf("corpus generator %s not found (it ships beside the project root, not in a user's clone)", script)
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		b.Skip("python3 not found; it is needed to generate the benchmark corpus")
	}
	dir := b.TempDir()
	if out, err := exec.Command(py, script, dir).CombinedOutput(); err != nil {
		b.Fatalf("generating corpus: %v\n%s", err, out)
	}
	events := readLines(b, filepath.Join(dir, "events.jsonl"))
	for _, kind := range corpusKinds {
		b.Run(kind, func(b *testing.B) {
			m := pattern.NewMatcher()
			for i, r := range readLines(b, filepath.Join(dir, "rules-"+kind+".jsonl")) {
				p, err := pattern.Compile(r)
				if err != nil {
					b.Fatal(err)
				}
				_ = m.Add(fmt.Sprintf("%s-%d", kind, i), p)
			}
			if _, err := m.Match(events[0]); err != nil {
				b.Fatal(err)
			}
			matched := 0
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				got, err := m.Match(events[i%len(events)])
				if err != nil {
					b.Fatal(err)
				}
				matched += len(got)
			}
			if cpu := cpuTime() - cpu0; cpu > 0 {
				b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(matched)/float64(b.N), "matches/event")
		})
	}
}

func readLines(b *testing.B, path string) [][]byte {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return out
}
