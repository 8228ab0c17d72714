package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCertPair writes a self-signed certificate and its key as PEM files
// and returns their paths.
func writeCertPair(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "agent-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestConfigOptions: every setting reaches Options, durations and the
// octal mode are parsed, the token file is read and trimmed, and the TLS
// files are loaded.
func TestConfigOptions(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCertPair(t, dir)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Config{
		Centers: []string{"127.0.0.1:1", "127.0.0.1:2"}, Region: "r", Subscribe: []string{"svc/"},
		TokenFile: tokenFile, Control: "/tmp/x.sock", ControlMode: "0640", ControlUIDs: []int{1000},
		Metrics: "127.0.0.1:0", RegionSize: 1 << 20, KeepAlive: "250ms", SuspectShare: 0.4, SuspectHold: "3s",
		HugeTLBDir: "/dev/hugepages",
		TLSCA:      certFile, TLSCert: certFile, TLSKey: keyFile, TLSServerName: "center.example",
	}
	o, err := c.Options()
	if err != nil {
		t.Fatal(err)
	}
	if o.Token != "s3cret" || o.ControlMode != 0o640 || o.KeepAlive != 250*time.Millisecond ||
		o.SuspectHold != 3*time.Second || o.SuspectShare != 0.4 || o.Shm.Size != 1<<20 ||
		len(o.Centers) != 2 || o.Region != "r" || len(o.Prefixes) != 1 || o.Control != "/tmp/x.sock" ||
		len(o.ControlUIDs) != 1 || o.Metrics != "127.0.0.1:0" || o.Shm.HugeTLBDir != "/dev/hugepages" {
		t.Fatalf("options: %+v", o)
	}
	if o.TLS == nil || o.TLS.RootCAs == nil || len(o.TLS.Certificates) != 1 || o.TLS.ServerName != "center.example" {
		t.Fatalf("tls: %+v", o.TLS)
	}
	// An explicit token wins over the file.
	c.Token = "given"
	if o, err := c.Options(); err != nil || o.Token != "given" {
		t.Fatalf("explicit token: %q %v", o.Token, err)
	}
	// No TLS setting, no TLS.
	if o, err := (Config{Centers: []string{"127.0.0.1:1"}}).Options(); err != nil || o.TLS != nil {
		t.Fatalf("plain config: %+v %v", o.TLS, err)
	}
}

// TestConfigOptionsErrors: each bad setting is ErrConfig and names itself.
func TestConfigOptionsErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCertPair(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    Config
	}{
		{"token_file missing", Config{TokenFile: filepath.Join(dir, "none")}},
		{"control_mode not octal", Config{ControlMode: "0689"}},
		{"control_mode too wide", Config{ControlMode: "1777"}},
		{"keepalive", Config{KeepAlive: "soon"}},
		{"suspect_hold", Config{SuspectHold: "10"}},
		{"tls_ca missing", Config{TLSCA: filepath.Join(dir, "none.pem")}},
		{"tls_ca holds no certificate", Config{TLSCA: notPEM}},
		{"tls_cert without tls_key", Config{TLSCert: certFile}},
		{"tls_key without tls_cert", Config{TLSKey: keyFile}},
		{"tls key pair mismatched files", Config{TLSCert: keyFile, TLSKey: certFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.c.Options(); !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want ErrConfig", err)
			}
		})
	}
}
