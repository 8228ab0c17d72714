package pair

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry"
	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/internal/wire"
)

type testPKI struct {
	pool   *x509.CertPool
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

func newTestPKI(t *testing.T) *testPKI {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &testPKI{pool: pool, ca: ca, caKey: key, serial: 1}
}

func (p *testPKI) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	p.serial++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestTLSWithPeerClientCertificates(t *testing.T) {
	pki := newTestPKI(t)
	server := pki.issue(t, "center", x509.ExtKeyUsageServerAuth)
	peerCert := pki.issue(t, "peer", x509.ExtKeyUsageClientAuth)
	c := testCenter(t, Options{Options: center.Options{Insecure: true, TLS: &tls.Config{Certificates: []tls.Certificate{server}, ClientCAs: pki.pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}, RequirePeerCert: true}})
	addr := c.Addr().String()
	plain := &tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12}
	withCert := &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{peerCert}, MinVersion: tls.VersionTLS12}

	agent := dialT(t, addr, registry.DialOptions{Role: wire.RoleAdmin, TLS: plain})
	if _, err := agent.Put(tctx(t), "cfg/tls", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Dial(tctx(t), addr, registry.DialOptions{Role: wire.RolePeer, TLS: plain}); !errors.Is(err, wire.ErrUnauthorized) {
		t.Fatalf("peer without a client certificate: %v", err)
	}
	peer := dialT(t, addr, registry.DialOptions{Role: wire.RolePeer, TLS: withCert, CenterID: "other"})
	if d, err := peer.Digests(tctx(t)); err != nil || len(d) != numBuckets {
		t.Fatalf("peer with certificate: %d %v", len(d), err)
	}
	// A plaintext client cannot talk to a TLS center.
	if _, err := registry.Dial(tctx(t), addr, registry.DialOptions{Role: wire.RoleAgent}); err == nil {
		t.Fatal("plaintext dial to a TLS center succeeded")
	}
}
