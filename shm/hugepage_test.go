package shm

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
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
	_, r := openPair(t, opts)
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

// hugetlbPool mounts hugetlbfs for the test and sets the system's pool of
// 2 MiB pages to pages (restored afterwards), or skips where this process
// may not (not root). CI runs as root.
func hugetlbPool(t *testing.T, pages int) string {
	t.Helper()
	const knob = "/proc/sys/vm/nr_hugepages"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Skipf("no %s: %v", knob, err)
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "hugetlbfs", "none", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount hugetlbfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	if err := os.WriteFile(knob, []byte(strconv.Itoa(pages)), 0o644); err != nil {
		t.Skipf("cannot size the huge page pool: %v", err)
	}
	t.Cleanup(func() { os.WriteFile(knob, old, 0o644) })
	return dir
}

func freeHugePages(t *testing.T) int {
	b, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// TestHugeTLBDir: the data file lives on hugetlbfs, the path links to it,
// readers read it with 2 MiB pages, a rebuild moves to a new file there
// and gives the old file's pages back, and a writer reopening the region
// finds it again.
func TestHugeTLBDir(t *testing.T) {
	huge := hugetlbPool(t, 16)
	if free := freeHugePages(t); free < 8 {
		t.Skipf("the kernel gave the pool %d free pages, the test needs 8", free)
	}
	free0 := freeHugePages(t)
	opts := Options{Dir: t.TempDir(), Size: 4 << 20, HugeTLBDir: huge, ReadLease: 100 * time.Millisecond}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	if st := w.Stat(); st.HugeTLBFallback != "" {
		t.Fatalf("fell back: %s", st.HugeTLBFallback)
	}
	path := opts.Resolve("r")
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the region's path is not a link: %v %v", fi, err)
	}
	for i := 0; i < 500; i++ {
		if err := w.Put([]byte(fmt.Sprintf("k/%03d", i)), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if used := free0 - freeHugePages(t); used != 2 {
		t.Fatalf("a 4 MiB region took %d huge pages, want 2", used)
	}
	r, err := Open("r", Options{Dir: opts.Dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := r.Pages()
	if err != nil {
		t.Fatal(err)
	}
	if p.KernelPageBytes != 2<<20 || !strings.Contains(p.String(), "hugetlbfs") {
		t.Fatalf("pages: %+v %q", p, p.String())
	}
	// A rebuild: a new file on hugetlbfs, the old one's pages returned
	// once the reader has moved off it and unmapped it.
	if err := w.Compact(); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Get([]byte("k/007")); err != nil || string(v) != "v" {
		t.Fatalf("Get after the rebuild: %q %v", v, err)
	}
	// The old file stays for a read lease (a reader may have read the old
	// link and not yet opened its target), then goes at a commit.
	if files, _ := filepath.Glob(filepath.Join(huge, "*.data")); len(files) != 2 {
		t.Fatalf("hugetlbfs holds %d files right after a rebuild, want 2 (old and new): %v", len(files), files)
	}
	time.Sleep(150 * time.Millisecond)
	if err := w.Put([]byte("after"), []byte("the lease")); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(huge, "*.data")); len(files) != 1 {
		t.Fatalf("hugetlbfs holds %d files a lease after a rebuild, want 1: %v", len(files), files)
	}
	w.Close()
	w, err = OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if st := w.Stat(); st.Compactions != 1 || st.Entries != 501 {
		t.Fatalf("reopened: %d rebuilds, %d entries (a reopen must not rebuild a region already there)", st.Compactions, st.Entries)
	}
	rep, err := Fsck("r", Options{Dir: opts.Dir})
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("fsck: %v %q", err, rep.Problems)
	}
}

// TestHugeTLBDirFallsBack: a pool too small for the file leaves the region
// on a regular file, saying why, and readers read it as ever.
func TestHugeTLBDirFallsBack(t *testing.T) {
	huge := hugetlbPool(t, 1)
	opts := Options{Dir: t.TempDir(), Size: 16 << 20, HugeTLBDir: huge}
	w, err := OpenWriter("r", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	st := w.Stat()
	if !strings.Contains(st.HugeTLBFallback, "too few free huge pages") {
		t.Fatalf("no fallback reported: %+v", st)
	}
	if fi, err := os.Lstat(opts.Resolve("r")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the fallback region is not a regular file: %v %v", fi, err)
	}
	if err := w.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if files, _ := filepath.Glob(filepath.Join(huge, "*")); len(files) != 0 {
		t.Fatalf("the failed attempt left %v on hugetlbfs", files)
	}
	if _, err := OpenWriter("x", Options{Dir: t.TempDir(), HugeTLBDir: t.TempDir()}); !errors.Is(err, ErrNotHugetlbfs) {
		t.Fatalf("HugeTLBDir on a directory that is not hugetlbfs: %v", err)
	}
}

func TestHugeTLBFileNames(t *testing.T) {
	prefix := hugeTLBPrefix("/dev/shm/shmreg/a")
	for name, want := range map[string]bool{
		prefix + "lx3k9a.data":                true,
		prefix + ".data":                      false,
		prefix + "lx3k9a.data.tmp":            false,
		prefix + "x-0badf00d.lx3k9a.data":     false, // a region named like a prefix of ours
		"b" + prefix[1:] + "lx3k9a.data":      false,
		prefix + "LX3K9A.data":                false,
		prefix[:len(prefix)-1] + "lx3k9.data": false,
	} {
		if got := isHugeTLBFileOf(name, prefix); got != want {
			t.Errorf("isHugeTLBFileOf(%q) = %v, want %v", name, got, want)
		}
	}
}
