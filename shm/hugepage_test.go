package shm

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// hugeDir mounts a tmpfs with huge=within_size for the test, or skips when
// this process may not mount (not root, or no mount namespace rights). The
// skip is reported; the assertions below run wherever mounting works (CI
// runs as root).
func hugeDir(t *testing.T, opt string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256m,huge="+opt, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs with huge=%s here: %v %s", opt, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func TestHugePagesOnHugeTmpfs(t *testing.T) {
	if b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/shmem_enabled"); err != nil || strings.Contains(string(b), "[deny]") {
		t.Skipf("transparent huge pages for shared memory are unavailable: %v %s", err, b)
	}
	dir := hugeDir(t, "within_size")
	opts := Options{Dir: dir, Size: 6<<20 + 12345}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := 0; i < 2000; i++ {
		if err := w.Put([]byte{byte(i), byte(i >> 8), 'k'}, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if st := w.Stat(); st.FileBytes%hugePageSize != 0 {
		t.Fatalf("a region on a huge tmpfs is %d bytes, not a whole number of huge pages", st.FileBytes)
	}
	r, err := Open("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := r.Pages()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pages: %+v (%s)", p, p)
	if !p.HugeCapable {
		t.Fatal("a tmpfs with huge=within_size was not recognised")
	}
	if p.HugeMappedBytes == 0 {
		t.Fatalf("no part of the region is mapped with huge pages: %+v", p)
	}
	if v, err := r.Get([]byte{7, 0, 'k'}); err != nil || string(v) != "v" {
		t.Fatalf("Get: %q %v", v, err)
	}
}

func TestNoHugePagesOnPlainTmpfs(t *testing.T) {
	dir := hugeDir(t, "never")
	opts := Options{Dir: dir, Size: 1 << 20}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := Open("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := r.Pages()
	if err != nil {
		t.Fatal(err)
	}
	if p.HugeCapable || p.HugeMappedBytes != 0 || p.KernelPageBytes != 4096 {
		t.Fatalf("plain tmpfs: %+v", p)
	}
	if !strings.Contains(p.String(), "not a tmpfs mounted with huge=") {
		t.Fatalf("Pages.String() = %q", p)
	}
}

func TestHugetlbfsIsRefused(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "hugetlbfs", "none", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount hugetlbfs here: %v %s", err, out)
	}
	defer exec.Command("umount", "-l", dir).Run()
	_, err := OpenWriter("r", Options{Dir: dir})
	if !errors.Is(err, ErrHugetlbfs) {
		t.Fatalf("OpenWriter on hugetlbfs: %v, want ErrHugetlbfs", err)
	}
}

func TestMountinfoUnescape(t *testing.T) {
	if got := unescapeMount(`/run/a\040b`); got != "/run/a b" {
		t.Fatalf("unescape: %q", got)
	}
}
