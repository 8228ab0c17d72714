package agent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the agent's settings as a file holds them (JSON, or YAML when
// the file name ends in .yaml or .yml) and as `shmreg agent` flags set them.
// Durations are strings such as "300ms"; the control socket mode is octal
// ("0660").
//
//	centers: [10.0.0.1:7701, 10.0.0.2:7701]
//	region: /dev/shm/shmreg/default
//	subscribe: [svc/, cfg/web/]
//	control: /run/shmreg/agent.sock
//	metrics: 127.0.0.1:9178
type Config struct {
	Centers     []string `json:"centers" yaml:"centers"`
	Region      string   `json:"region" yaml:"region"`
	Subscribe   []string `json:"subscribe" yaml:"subscribe"`
	Token       string   `json:"token,omitempty" yaml:"token,omitempty"`
	TokenFile   string   `json:"token_file,omitempty" yaml:"token_file,omitempty"`
	Control     string   `json:"control,omitempty" yaml:"control,omitempty"`
	ControlMode string   `json:"control_mode,omitempty" yaml:"control_mode,omitempty"`
	ControlUIDs []int    `json:"control_uids,omitempty" yaml:"control_uids,omitempty"`
	Metrics     string   `json:"metrics,omitempty" yaml:"metrics,omitempty"`
	RegionSize  int64    `json:"region_size,omitempty" yaml:"region_size,omitempty"`
	// HugeTLBDir puts the region's data file on this hugetlbfs mount
	// (shm.Options.HugeTLBDir).
	HugeTLBDir string `json:"hugetlbfs_dir,omitempty" yaml:"hugetlbfs_dir,omitempty"`

	TLSCA         string `json:"tls_ca,omitempty" yaml:"tls_ca,omitempty"`
	TLSCert       string `json:"tls_cert,omitempty" yaml:"tls_cert,omitempty"`
	TLSKey        string `json:"tls_key,omitempty" yaml:"tls_key,omitempty"`
	TLSServerName string `json:"tls_server_name,omitempty" yaml:"tls_server_name,omitempty"`

	KeepAlive    string  `json:"keepalive,omitempty" yaml:"keepalive,omitempty"`
	SuspectShare float64 `json:"suspect_share,omitempty" yaml:"suspect_share,omitempty"`
	SuspectHold  string  `json:"suspect_hold,omitempty" yaml:"suspect_hold,omitempty"`
}

// LoadConfig reads a config file. Unknown fields are an error, so that a
// misspelt setting is not silently ignored.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		err = dec.Decode(&c)
	default:
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		err = dec.Decode(&c)
	}
	if err != nil {
		return Config{}, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	return c, nil
}

// Options turns the settings into Options (Logger and the Shm directory
// left to the caller).
func (c Config) Options() (Options, error) {
	o := Options{
		Centers:      c.Centers,
		Region:       c.Region,
		Prefixes:     c.Subscribe,
		Token:        c.Token,
		Control:      c.Control,
		ControlUIDs:  c.ControlUIDs,
		Metrics:      c.Metrics,
		SuspectShare: c.SuspectShare,
	}
	o.Shm.Size = c.RegionSize
	o.Shm.HugeTLBDir = c.HugeTLBDir
	if c.TokenFile != "" && o.Token == "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return o, fmt.Errorf("%w: token file: %v", ErrConfig, err)
		}
		o.Token = strings.TrimSpace(string(b))
	}
	if c.ControlMode != "" {
		m, err := strconv.ParseUint(c.ControlMode, 8, 32)
		if err != nil || m > 0o777 {
			return o, fmt.Errorf("%w: control_mode %q is not an octal file mode", ErrConfig, c.ControlMode)
		}
		o.ControlMode = os.FileMode(m)
	}
	for _, d := range []struct {
		name string
		s    string
		to   *time.Duration
	}{{"keepalive", c.KeepAlive, &o.KeepAlive}, {"suspect_hold", c.SuspectHold, &o.SuspectHold}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return o, fmt.Errorf("%w: %s: %v", ErrConfig, d.name, err)
		}
		*d.to = v
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return o, err
	}
	o.TLS = tc
	return o, nil
}

// tlsConfig builds the client TLS configuration, or nil if no TLS setting
// is given.
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLSCA == "" && c.TLSCert == "" && c.TLSKey == "" && c.TLSServerName == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLSServerName}
	if c.TLSCA != "" {
		pem, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("%w: tls_ca: %v", ErrConfig, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: tls_ca %s holds no certificate", ErrConfig, c.TLSCA)
		}
		tc.RootCAs = pool
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return nil, fmt.Errorf("%w: tls_cert and tls_key go together", ErrConfig)
	}
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
