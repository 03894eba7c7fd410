package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Security says how a listener is protected.
type Security struct {
	// CertFile and KeyFile are the server's TLS certificate and key (PEM).
	CertFile, KeyFile string
	// ClientCAFile (PEM), with TLS, requires client certificates signed by
	// these CAs (mTLS).
	ClientCAFile string
	// Token, when set, is the bearer token every call must carry
	// ("authorization: Bearer <token>" metadata). At least MinTokenLen bytes.
	Token string
}

// MinTokenLen is the shortest bearer token accepted.
const MinTokenLen = 16

// ErrInsecure is returned for a listener that would expose the API beyond
// this machine without TLS and authentication.
var ErrInsecure = errors.New("api: insecure listener refused")

// IsLoopback reports whether addr (host:port) names a loopback interface:
// 127.0.0.0/8, ::1 or "localhost". An empty host (all interfaces) or any
// other name is not loopback.
func IsLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("api: listen address %q: %w (want host:port, e.g. 127.0.0.1:7421)", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// ServerOptions checks sec against the listen address and returns the gRPC
// options that enforce it: TLS credentials, the bearer-token check, and a
// panic guard. On loopback everything is optional; on any other address TLS
// is required, and so is a token or client certificates (ErrInsecure
// otherwise).
func ServerOptions(addr string, sec Security, log *slog.Logger) ([]grpc.ServerOption, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	loop, err := IsLoopback(addr)
	if err != nil {
		return nil, err
	}
	hasTLS := sec.CertFile != "" || sec.KeyFile != ""
	if hasTLS && (sec.CertFile == "" || sec.KeyFile == "") {
		return nil, errors.New("api: TLS needs both a certificate and a key file (--tls-cert and --tls-key)")
	}
	if sec.ClientCAFile != "" && !hasTLS {
		return nil, errors.New("api: client certificates (--tls-client-ca) need TLS: also pass --tls-cert and --tls-key")
	}
	if sec.Token != "" && len(sec.Token) < MinTokenLen {
		return nil, fmt.Errorf("api: the bearer token is %d bytes; use at least %d random bytes (e.g. openssl rand -hex 32)", len(sec.Token), MinTokenLen)
	}
	if !loop {
		if !hasTLS {
			return nil, fmt.Errorf("%w: %s is not a loopback address, so TLS is required: pass --tls-cert and --tls-key (or listen on 127.0.0.1)", ErrInsecure, addr)
		}
		if sec.Token == "" && sec.ClientCAFile == "" {
			return nil, fmt.Errorf("%w: %s is not a loopback address, so callers must authenticate: pass --token (or $AGENTBUS_TOKEN) or --tls-client-ca", ErrInsecure, addr)
		}
	}
	var opts []grpc.ServerOption
	if hasTLS {
		cfg, err := serverTLS(sec)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	unary := []grpc.UnaryServerInterceptor{recoverUnary(log)}
	streams := []grpc.StreamServerInterceptor{recoverStream(log)}
	if sec.Token != "" {
		a := tokenAuth{sum: sha256.Sum256([]byte(sec.Token))}
		unary = append(unary, a.unary)
		streams = append(streams, a.stream)
	}
	opts = append(opts, grpc.ChainUnaryInterceptor(unary...), grpc.ChainStreamInterceptor(streams...))
	return opts, nil
}

func serverTLS(sec Security) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(sec.CertFile, sec.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("api: load TLS certificate %s / key %s: %w", sec.CertFile, sec.KeyFile, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if sec.ClientCAFile != "" {
		pool, err := LoadCertPool(sec.ClientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// LoadCertPool reads PEM certificates into a pool.
func LoadCertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("api: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("api: %s holds no PEM certificate", file)
	}
	return pool, nil
}

// tokenAuth checks the bearer token. It compares SHA-256 digests in constant
// time, so neither the token's content nor its length leaks through timing.
type tokenAuth struct{ sum [sha256.Size]byte }

func (a tokenAuth) check(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) == 0 {
		return status.Error(codes.Unauthenticated, "missing bearer token: pass --token or set $AGENTBUS_TOKEN (gRPC metadata \"authorization: Bearer <token>\")")
	}
	tok, ok := strings.CutPrefix(vals[0], "Bearer ")
	got := sha256.Sum256([]byte(tok))
	if !ok || subtle.ConstantTimeCompare(got[:], a.sum[:]) != 1 {
		return status.Error(codes.Unauthenticated, "invalid bearer token: check --token / $AGENTBUS_TOKEN against the server's")
	}
	return nil
}

func (a tokenAuth) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := a.check(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (a tokenAuth) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := a.check(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// recoverUnary turns a handler panic into INTERNAL instead of killing the
// process that runs the whole embedded runtime.
func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (_ any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("api: panic", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s (see the server log)", info.FullMethod)
			}
		}()
		return h(ctx, req)
	}
}

func recoverStream(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("api: panic", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				err = status.Errorf(codes.Internal, "internal error in %s (see the server log)", info.FullMethod)
			}
		}()
		return h(srv, ss)
	}
}

// Listener is a running gRPC server.
type Listener struct {
	g   *grpc.Server
	s   *Server
	lis net.Listener
	err chan error
}

// Listen checks sec (see ServerOptions), listens on addr and serves s until
// Stop.
func Listen(addr string, sec Security, s *Server, log *slog.Logger) (*Listener, error) {
	opts, err := ServerOptions(addr, sec, log)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", addr, err)
	}
	g := grpc.NewServer(opts...)
	s.Register(g)
	l := &Listener{g: g, s: s, lis: lis, err: make(chan error, 1)}
	go func() { l.err <- g.Serve(lis) }()
	return l, nil
}

// Addr is the address the server listens on (with the real port when the
// requested one was 0).
func (l *Listener) Addr() net.Addr { return l.lis.Addr() }

// Stop stops accepting calls and waits up to grace for running ones (open
// Watch streams are cut after it).
func (l *Listener) Stop(grace time.Duration) {
	done := make(chan struct{})
	go func() { l.g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		l.g.Stop()
		<-done
	}
	l.s.Close(context.Background())
}
