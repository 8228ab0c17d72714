package pair_test

import (
	"context"
	"fmt"

	"github.com/shmreg/shmreg/registry/center"
	"github.com/shmreg/shmreg/registry/pair"
)

func ExampleNew() {
	ctx := context.Background()
	// An in-memory center on an ephemeral loopback port (set DataDir to
	// persist, Peer to mirror) whose writers present a token.
	c, err := pair.New(pair.Options{Options: center.Options{Token: "s3cret"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := c.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer c.Shutdown(ctx)
	fmt.Println(c.Addr() != nil, c.ID() != "")
	// Output: true true
}
