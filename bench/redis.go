package bench

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// redisSystem is GET over loopback from a redis-server the harness started
// (no persistence, so a load is not slowed by disk). All clients share one
// go-redis client whose pool has a connection per client, as an
// application would.
type redisSystem struct {
	srv *server
	rdb *redis.Client
}

// OpenRedis starts redis-server on a free loopback port and loads d with
// pipelined SETs. Without redis-server it fails with ErrNotAvailable.
func OpenRedis(ctx context.Context, d *Dataset, dir string) (System, error) {
	bin, err := lookBinary("redis-server", "apt-get install redis-server")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: loopback(port), PoolSize: 256, MinIdleConns: 1})
	args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", ".", "--daemonize", "no", "--protected-mode", "yes"}
	srv, err := startServer(ctx, dir, bin, args, func(ctx context.Context) error { return rdb.Ping(ctx).Err() })
	if err != nil {
		rdb.Close()
		return nil, err
	}
	s := &redisSystem{srv: srv, rdb: rdb}
	for from := 0; from < d.Len(); from += 1000 {
		p := rdb.Pipeline()
		for i := from; i < min(from+1000, d.Len()); i++ {
			p.Set(ctx, string(d.Keys[i]), d.Values[i], 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			s.Close()
			return nil, fmt.Errorf("redis load: %w", err)
		}
	}
	return s, nil
}

func (s *redisSystem) Name() string { return "redis" }

func (s *redisSystem) Client(context.Context, int) (Lookup, error) {
	var sink int
	return func(ctx context.Context, key []byte) error {
		v, err := s.rdb.Get(ctx, string(key)).Bytes()
		if err != nil {
			return fmt.Errorf("redis get %s: %w", key, err)
		}
		sink += touch(v)
		return nil
	}, nil
}

func (s *redisSystem) Close() error {
	s.rdb.Close()
	return s.srv.stop()
}
