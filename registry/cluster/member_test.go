package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shmreg/shmreg/registry/center"
)

// singleOptions are the options of a one-voter cluster in dir.
func singleOptions(t testing.TB, name, dir string) Options {
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	return Options{
		Options:        center.Options{Insecure: true},
		Name:           name,
		DataDir:        dir,
		PeerURL:        peer,
		ClientURL:      fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		InitialCluster: name + "=" + peer,
		TickMs:         testTickMs,
		ElectionMs:     testElectionMs,
		NoPromote:      true,
	}
}

// A data directory holds one member: a center started on it under another
// name exits with a clear error instead of joining as someone else.
func TestDataDirOfAnotherMember(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := New(ctx, singleOptions(t, "a", dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.Shutdown(ctx)
	o := singleOptions(t, "b", dir)
	_, err = New(ctx, o)
	if err == nil || !strings.Contains(err.Error(), `holds member "a"`) {
		t.Fatalf("started on a's directory as b: %v", err)
	}
}
