package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdSystem is a serializable Get (answered by the member itself, no
// quorum round) over loopback from an etcd the harness started. Each
// client has its own etcd client (its own gRPC connection).
type etcdSystem struct {
	srv      *server
	endpoint string
	mu       sync.Mutex
	clients  []*clientv3.Client
}

// etcdMaxTxnOps is etcd's default limit on operations in one transaction.
const etcdMaxTxnOps = 128

// OpenEtcd starts etcd on free loopback ports with a temporary data
// directory and loads d in transactions of 128 puts. Without etcd it fails
// with ErrNotAvailable.
func OpenEtcd(ctx context.Context, d *Dataset, dir string) (System, error) {
	bin, err := lookBinary("etcd", "apt-get install etcd-server")
	if err != nil {
		return nil, err
	}
	cport, err := freePort()
	if err != nil {
		return nil, err
	}
	pport, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &etcdSystem{endpoint: "http://" + loopback(cport)}
	peer := "http://" + loopback(pport)
	args := []string{
		"--name", "bench", "--data-dir", "data",
		"--listen-client-urls", s.endpoint, "--advertise-client-urls", s.endpoint,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench=" + peer, "--initial-cluster-state", "new",
		"--log-level", "error", "--quota-backend-bytes", strconv.Itoa(8 << 30),
	}
	admin, err := s.newClient()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	s.srv, err = startServer(ctx, dir, bin, args, func(ctx context.Context) error {
		_, err := admin.Get(ctx, "ready", clientv3.WithSerializable())
		return err
	})
	if err != nil {
		return nil, err
	}
	// Load from 8 goroutines: each transaction waits for an fsync.
	var (
		wg   sync.WaitGroup
		errs = make([]error, 8)
	)
	chunks := (d.Len() + etcdMaxTxnOps - 1) / etcdMaxTxnOps
	for w := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := w; c < chunks; c += len(errs) {
				var ops []clientv3.Op
				for i := c * etcdMaxTxnOps; i < min((c+1)*etcdMaxTxnOps, d.Len()); i++ {
					ops = append(ops, clientv3.OpPut(string(d.Keys[i]), string(d.Values[i])))
				}
				if _, err := admin.Txn(ctx).Then(ops...).Commit(); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("etcd load: %w", err)
		}
	}
	return s, nil
}

func (s *etcdSystem) newClient() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{s.endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

func (s *etcdSystem) Name() string { return "etcd" }

func (s *etcdSystem) Client(context.Context, int) (Lookup, error) {
	cli, err := s.newClient()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.clients = append(s.clients, cli)
	s.mu.Unlock()
	var sink int
	return func(ctx context.Context, key []byte) error {
		resp, err := cli.Get(ctx, string(key), clientv3.WithSerializable())
		if err != nil {
			return fmt.Errorf("etcd get %s: %w", key, err)
		}
		if len(resp.Kvs) != 1 {
			return fmt.Errorf("etcd get %s: missing", key)
		}
		sink += touch(resp.Kvs[0].Value)
		return nil
	}, nil
}

func (s *etcdSystem) Close() error {
	s.mu.Lock()
	for _, c := range s.clients {
		c.Close()
	}
	s.clients = nil
	s.mu.Unlock()
	if s.srv == nil {
		return nil
	}
	return s.srv.stop()
}
