package httpget_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/agentbus/agentbus/tools"
	"github.com/agentbus/agentbus/tools/builtin/httpget"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func newEntry(t *testing.T, cfg httpget.Config) *tools.Entry {
	t.Helper()
	tool, err := httpget.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := tools.NewRegistry()
	if err := r.Register(tool); err != nil {
		t.Fatal(err)
	}
	e, err := r.Lookup(httpget.Name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func get(t *testing.T, e *tools.Entry, u string) (httpget.Output, error) {
	t.Helper()
	in, _ := json.Marshal(map[string]string{"url": u})
	out, err := e.Run(context.Background(), tools.Call{Input: in})
	if err != nil {
		return httpget.Output{}, err
	}
	var o httpget.Output
	if err := json.Unmarshal(out, &o); err != nil {
		t.Fatal(err)
	}
	return o, nil
}

// server starts a loopback test server with a few routes.
func server(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "hello from test")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		fmt.Fprint(w, strings.Repeat("é", 1000)) // 2000 bytes, 2-byte runes
	})
	mux.HandleFunc("/binary", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write([]byte{0xff, 0xfe, 0x00, 0x01})
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/notfound", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "nope", http.StatusNotFound)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestFetchAllowedLoopback(t *testing.T) {
	t.Parallel()
	srv, _ := server(t)
	e := newEntry(t, httpget.Config{AllowHosts: []string{"127.0.0.1"}, AllowAddrs: loopback, MaxBytes: 100})
	if !e.Spec().Idempotent {
		t.Fatal("http_get must be idempotent")
	}
	tests := []struct {
		name string
		path string
		want httpget.Output
	}{
		{"text", "/hello", httpget.Output{Status: 200, ContentType: "text/plain", Body: "hello from test", Bytes: 15}},
		{"truncated at rune boundary", "/big", httpget.Output{Status: 200, ContentType: "text/plain; charset=utf-8", Body: strings.Repeat("é", 50), Bytes: 100, Truncated: true}},
		{"binary as base64", "/binary", httpget.Output{Status: 200, ContentType: "application/octet-stream", BodyBase64: "//4AAQ==", Bytes: 4}},
		{"404 is an answer, not an error", "/notfound", httpget.Output{Status: 404, ContentType: "text/plain; charset=utf-8", Body: "nope\n", Bytes: 5}},
		{"same-host redirect followed", "/redirect?to=/hello", httpget.Output{Status: 200, ContentType: "text/plain", Body: "hello from test", Bytes: 15}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := get(t, e, srv.URL+tt.path)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.URL = got.URL
			if got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			if tt.path == "/redirect?to=/hello" && got.URL != srv.URL+"/hello" {
				t.Fatalf("final URL %q", got.URL)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	srv, _ := server(t)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name string
		cfg  httpget.Config
		url  string
		want error
	}{
		{"loopback not explicitly allowed", httpget.Config{AllowHosts: []string{"127.0.0.1"}}, srv.URL + "/hello", httpget.ErrAddressBlocked},
		{"name resolving to loopback", httpget.Config{AllowHosts: []string{"localhost"}}, fmt.Sprintf("http://localhost:%d/hello", port), httpget.ErrAddressBlocked},
		{"host not on allow list", httpget.Config{AllowHosts: []string{"example.com"}, AllowAddrs: loopback}, srv.URL + "/hello", httpget.ErrHostNotAllowed},
		{"empty allow list allows nothing", httpget.Config{AllowAddrs: loopback}, srv.URL + "/hello", httpget.ErrHostNotAllowed},
		{"wildcard does not match apex", httpget.Config{AllowHosts: []string{"*.localhost"}, AllowAddrs: loopback}, fmt.Sprintf("http://localhost:%d/hello", port), httpget.ErrHostNotAllowed},
		{"redirect to a host not allowed", httpget.Config{AllowHosts: []string{"127.0.0.1"}, AllowAddrs: loopback},
			srv.URL + "/redirect?to=" + url.QueryEscape(fmt.Sprintf("http://localhost:%d/hello", port)), httpget.ErrHostNotAllowed},
		{"redirect to metadata address", httpget.Config{AllowHosts: []string{"127.0.0.1"}, AllowAddrs: loopback},
			srv.URL + "/redirect?to=" + url.QueryEscape("http://169.254.169.254/latest/meta-data/"), httpget.ErrHostNotAllowed},
		{"redirect loop", httpget.Config{AllowHosts: []string{"127.0.0.1"}, AllowAddrs: loopback, MaxRedirects: 3}, srv.URL + "/loop", httpget.ErrTooManyRedirects},
		{"redirect to another scheme", httpget.Config{AllowHosts: []string{"127.0.0.1"}, AllowAddrs: loopback},
			srv.URL + "/redirect?to=" + url.QueryEscape("ftp://127.0.0.1/x"), tools.ErrInvalidInput},
		{"time limit", httpget.Config{AllowHosts: []string{"127.0.0.1"}, AllowAddrs: loopback, Timeout: 200 * time.Millisecond}, srv.URL + "/slow", context.DeadlineExceeded},
		{"credentials in URL", httpget.Config{AllowHosts: []string{"127.0.0.1"}, AllowAddrs: loopback}, strings.Replace(srv.URL, "http://", "http://u:p@", 1) + "/hello", tools.ErrInvalidInput},
		{"not a URL scheme", httpget.Config{AllowHosts: []string{"127.0.0.1"}}, "file:///etc/passwd", tools.ErrInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEntry(t, tt.cfg)
			start := time.Now()
			_, err := get(t, e, tt.url)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if tt.want == context.DeadlineExceeded && time.Since(start) > 2*time.Second {
				t.Fatalf("time limit not enforced: took %v", time.Since(start))
			}
		})
	}
}

func TestBlockedDialNeverReachesServer(t *testing.T) {
	t.Parallel()
	srv, hits := server(t)
	e := newEntry(t, httpget.Config{AllowHosts: []string{"127.0.0.1"}})
	if _, err := get(t, e, srv.URL+"/hello"); !errors.Is(err, httpget.ErrAddressBlocked) {
		t.Fatalf("got %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("server saw %d requests", n)
	}
}

// TestDNSRebinding resolves an allow-listed public-looking name through a
// fake DNS server that first answers a public address and then loopback:
// whatever the answer at dial time, the dialed address is what is checked.
func TestDNSRebinding(t *testing.T) {
	t.Parallel()
	srv, hits := server(t)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	var queries atomic.Int32
	resolver := fakeDNS(t, func() [4]byte {
		// Every answer after the first points at loopback.
		if queries.Add(1) == 1 {
			return [4]byte{93, 184, 216, 34}
		}
		return [4]byte{127, 0, 0, 1}
	})
	// Warm-up lookup: the "check-time" answer is public.
	addrs, err := resolver.LookupHost(context.Background(), "rebind.example.com")
	if err != nil || len(addrs) == 0 || addrs[0] != "93.184.216.34" {
		t.Fatalf("warm-up lookup: %v %v", addrs, err)
	}
	e := newEntry(t, httpget.Config{AllowHosts: []string{"*.example.com"}, Resolver: resolver})
	_, err = get(t, e, fmt.Sprintf("http://rebind.example.com:%d/hello", port))
	if !errors.Is(err, httpget.ErrAddressBlocked) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("got %v, want ErrAddressBlocked naming 127.0.0.1", err)
	}
	if hits.Load() != 0 {
		t.Fatal("request reached the loopback server")
	}
	// With loopback explicitly allowed the same name works: the resolver is
	// really used and the block was the address rule.
	e = newEntry(t, httpget.Config{AllowHosts: []string{"*.example.com"}, AllowAddrs: loopback, Resolver: resolver})
	if o, err := get(t, e, fmt.Sprintf("http://rebind.example.com:%d/hello", port)); err != nil || o.Body != "hello from test" {
		t.Fatalf("allowed: %+v %v", o, err)
	}
}

// fakeDNS serves A queries over UDP with the address answer() returns and
// returns a Resolver that uses it.
func fakeDNS(t *testing.T, answer func() [4]byte) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			if q.Type == dnsmessage.TypeA {
				_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}, dnsmessage.AResource{A: answer()})
			}
			msg, err := b.Finish()
			if err != nil {
				continue
			}
			_, _ = pc.WriteTo(msg, from)
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEntry(t, httpget.Config{AllowHosts: []string{"example.com"}})
	for _, in := range []string{`{}`, `{"url":5}`, `{"url":"ftp://example.com/x"}`, `{"url":"example.com"}`, `{"url":"http://example.com","method":"POST"}`, `{"url":"http://"}`, `{"url":"http://exa mple.com/"}`} {
		if _, err := e.Run(context.Background(), tools.Call{Input: json.RawMessage(in)}); !errors.Is(err, tools.ErrInvalidInput) {
			t.Errorf("input %s: %v, want ErrInvalidInput", in, err)
		}
	}
}

func TestNewRejectsBadAllowList(t *testing.T) {
	t.Parallel()
	for _, h := range []string{"", "*", "*.", "a.*.com", "**.x.com", "http://x.com", "x.com/path", "x.com:80"} {
		if _, err := httpget.New(httpget.Config{AllowHosts: []string{h}}); err == nil {
			t.Errorf("New accepted allow-list entry %q", h)
		}
	}
	for _, h := range []string{"example.com", "*.example.com", "EXAMPLE.com.", "::1", "[::1]", "10.0.0.1"} {
		if _, err := httpget.New(httpget.Config{AllowHosts: []string{h}}); err != nil {
			t.Errorf("New rejected %q: %v", h, err)
		}
	}
}

func TestBlocked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want string
	}{
		{"8.8.8.8", ""},
		{"93.184.216.34", ""},
		{"2606:4700:4700::1111", ""},
		{"127.0.0.1", "loopback"},
		{"127.5.5.5", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"10.1.2.3", "private"},
		{"172.16.0.1", "private"},
		{"192.168.1.1", "private"},
		{"fd00::1", "private"},
		{"::ffff:192.168.0.1", "private"},
		{"169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"0.0.0.0", "unspecified"},
		{"::", "unspecified"},
		{"0.1.2.3", "unspecified (this network)"},
		{"224.0.0.1", "multicast"},
		{"239.1.1.1", "multicast"},
		{"ff02::1", "multicast"},
		{"ff0e::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"100.64.1.1", "private (carrier-grade NAT)"},
		{"240.0.0.1", "reserved"},
		{"64:ff9b::a00:1", "NAT64 (may reach a private IPv4 address)"},
	}
	for _, tt := range tests {
		if got := httpget.Blocked(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Blocked(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}
