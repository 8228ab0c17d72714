package grpcresolver_test

import (
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/shmreg/shmreg/registry/discovery"
	"github.com/shmreg/shmreg/registry/discovery/grpcresolver"
	"github.com/shmreg/shmreg/shm"
)

func ExampleNewBuilder() {
	dir, _ := os.MkdirTemp("", "shmreg-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "region")
	w, _ := shm.OpenWriter(path, shm.Options{Size: 4 << 20}) // the agent, in production
	defer w.Close()

	cat, err := discovery.Open(path, discovery.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cat.Close()
	conn, err := grpc.NewClient("shmreg:///orders",
		grpc.WithResolvers(grpcresolver.NewBuilder(cat, grpcresolver.Options{})),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	fmt.Println(conn.Target())
	// Output: shmreg:///orders
}
