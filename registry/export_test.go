package registry

import "context"

// For the external tests of this package (client_test.go), which need a
// center and so cannot be inside it (registry/pair imports registry).

// Registration returns the client's current registration of key.
func (c *Client) Registration(key string) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.regs[key]
}

// DeregisterAs does what the goroutine of registration r does when r's
// context ends.
func (c *Client) DeregisterAs(ctx context.Context, key string, r any) error {
	return c.deregister(ctx, key, r.(*registration))
}
