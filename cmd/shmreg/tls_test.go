package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/shm"
)

// testCA issues certificates for 127.0.0.1 and writes them as PEM files,
// the form the TLS flags take.
type testCA struct {
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pool   *x509.CertPool
	serial int64
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{dir: t.TempDir(), cert: cert, key: key, pool: x509.NewCertPool(), serial: 1}
	ca.pool.AddCert(cert)
	ca.write(t, name+".pem", "CERTIFICATE", der)
	return ca
}

func (ca *testCA) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(ca.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue writes a certificate for 127.0.0.1, good for servers and clients,
// and its key; it returns their paths.
func (ca *testCA) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	ca.serial++
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return ca.write(t, name+".pem", "CERTIFICATE", der), ca.write(t, name+"-key.pem", "EC PRIVATE KEY", keyDER)
}

func (ca *testCA) file() string { return filepath.Join(ca.dir, ca.cert.Subject.CommonName+".pem") }

// freeAddr picks a free loopback port (each center of a pair must know its
// peer's address before either starts).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// dialTLS connects to a center started as a process, retrying while it
// starts (there is nothing to wait on before it listens).
func dialTLS(ctx context.Context, t *testing.T, addr string, pool *x509.CertPool) *registry.Conn {
	t.Helper()
	for {
		conn, err := registry.Dial(ctx, addr, registry.DialOptions{Role: registry.RoleAgent,
			TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
		if err == nil {
			t.Cleanup(func() { conn.Close() })
			return conn
		}
		select {
		case <-ctx.Done():
			t.Fatalf("center %s not up: %v", addr, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestPairOverTLS starts a mirrored pair with 'shmreg center' and every TLS
// flag: each serves TLS, requires a client certificate from its peer and
// dials the peer with one. 'shmreg put --tls-ca' writes to A; the write
// reaches B over the mutually authenticated link, and 'shmreg agent
// --tls-ca' following B writes it into its region. Plaintext and an
// unknown CA are refused.
func TestPairOverTLS(t *testing.T) {
	ca := newTestCA(t, "test-ca")
	addrA, addrB := freeAddr(t), freeAddr(t)
	center := func(name, listen, peer string) *running {
		cert, key := ca.issue(t, name)
		peerCert, peerKey := ca.issue(t, name+"-peer")
		return startCLI(t, "center", "--listen", listen, "--peer", peer, "--data", t.TempDir(),
			"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca.file(),
			"--peer-tls-ca", ca.file(), "--peer-tls-cert", peerCert, "--peer-tls-key", peerKey,
			"--token", "tls-test-token", "--log-level", "warn")
	}
	a := center("center-a", addrA, addrB)
	b := center("center-b", addrB, addrA)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dialTLS(ctx, t, addrA, ca.pool)
	connB := dialTLS(ctx, t, addrB, ca.pool)

	// Without the token (and without a client certificate) a write is refused.
	r := runCLI(t, "put", "--centers", addrA, "--tls-ca", ca.file(), "cfg/web/timeout", "250ms")
	r.wantExit(t, 1)
	if !strings.Contains(r.stderr, "unauthorized") {
		t.Errorf("put without the token: stderr %q", r.stderr)
	}
	r = runCLI(t, "put", "--centers", addrA, "--tls-ca", ca.file(), "--token", "tls-test-token", "cfg/web/timeout", "250ms")
	r.wantExit(t, 0)

	// Replicated to B over the peer link (both ends check certificates).
	for {
		rec, err := connB.Get(ctx, "cfg/web/timeout")
		if err == nil && string(rec.Value) == "250ms" {
			break
		}
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the put never reached center B: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}

	region := filepath.Join(t.TempDir(), "region")
	ag := startCLI(t, "agent", "--centers", addrB, "--tls-ca", ca.file(), "--region", region,
		"--subscribe", "cfg/", "--region-size", "1048576", "--log-level", "warn")
	reader := openWhenCreated(ctx, t, region)
	defer reader.Close()
	for seq := reader.Seq(); ; {
		v, err := reader.Get([]byte("cfg/web/timeout"))
		if err == nil {
			if string(v) != "250ms" {
				t.Fatalf("region holds %q", v)
			}
			break
		}
		if !errors.Is(err, shm.ErrNotFound) {
			t.Fatal(err)
		}
		if seq, err = reader.Wait(ctx, seq); err != nil {
			t.Fatalf("the entry never reached the agent's region: %v", err)
		}
	}

	// Plaintext to a TLS center, and TLS with a CA that did not sign it.
	r = runCLI(t, "put", "--centers", addrA, "--timeout", "2s", "cfg/plain", "v")
	r.wantExit(t, 1)
	other := newTestCA(t, "other-ca")
	r = runCLI(t, "put", "--centers", addrA, "--timeout", "2s", "--tls-ca", other.file(), "cfg/other", "v")
	r.wantExit(t, 1)
	if !strings.Contains(r.stderr, "certificate") {
		t.Errorf("unknown CA: stderr %q", r.stderr)
	}
	r = runCLI(t, "put", "--centers", addrA, "--tls-ca", filepath.Join(t.TempDir(), "absent.pem"), "cfg/k", "v")
	r.wantExit(t, 1)
	if !strings.HasPrefix(r.stderr, "shmreg put: --tls-ca: ") {
		t.Errorf("missing CA file: stderr %q", r.stderr)
	}

	ag.stop(t, syscall.SIGTERM)
	a.stop(t, syscall.SIGTERM)
	b.stop(t, syscall.SIGTERM)
}

// TestCenterTLSFlagErrors: a certificate that cannot be loaded stops the
// center before it listens, naming the flag.
func TestCenterTLSFlagErrors(t *testing.T) {
	absent := filepath.Join(t.TempDir(), "absent.pem")
	ca := newTestCA(t, "test-ca")
	cert, key := ca.issue(t, "center")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", absent, "--tls-key", absent}, "shmreg center: --tls-cert: "},
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", absent}, "shmreg center: --tls-client-ca: "},
		{[]string{"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", key}, "no PEM certificates"},
		{[]string{"--peer-tls-ca", absent}, "shmreg center: --peer-tls-ca: "},
		{[]string{"--peer-tls-ca", ca.file(), "--peer-tls-cert", absent, "--peer-tls-key", absent}, "shmreg center: --peer-tls-cert: "},
	} {
		args := append([]string{"center", "--listen", "127.0.0.1:0", "--data", t.TempDir()}, tc.args...)
		r := runCLI(t, args...)
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q, want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}
