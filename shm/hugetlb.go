package shm

import (
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"
)

// Regions on hugetlbfs (Options.HugeTLBDir). A hugetlbfs file can only be
// sized and mapped in whole huge pages and written through a mapping, so
// only the data file goes there: the region's path (beside which the
// control file stays, on tmpfs) becomes a symbolic link to it. Readers
// follow the link like any path; replacing the region renames a new link
// over the path, exactly as it renames a new file, and removes the old
// hugetlbfs file once it is marked superseded (its pages return to the pool
// when the last reader unmaps it). The pages are reserved when the file is
// created (fallocate), so a pool with too few free huge pages is found
// there, and the writer falls back to a regular file beside the path,
// saying why in Stat.HugeTLBFallback.

// createMapping makes a new, empty data file for w's region: on hugetlbfs
// when the options ask for it and the pool has room, else beside the path.
func (w *Writer) createMapping(size int64, indexCap uint64) (*mapping, error) {
	if dir := w.opts.HugeTLBDir; dir != "" {
		m, err := createHugeTLBMapping(w.path, dir, size, w.opts.Perm, indexCap)
		if err == nil {
			w.hugeFallback = ""
			return m, nil
		}
		if !errors.Is(err, errHugePoolShort) {
			return nil, err
		}
		w.hugeFallback = err.Error()
	}
	return createMapping(w.path, size, w.opts.Perm, indexCap)
}

// errHugePoolShort: the hugetlbfs pool cannot hold the file.
var errHugePoolShort = errors.New("too few free huge pages")

// ErrNotHugetlbfs: Options.HugeTLBDir is not a hugetlbfs mount.
var ErrNotHugetlbfs = errors.New("shm: not a hugetlbfs mount")

// hugeTLBPrefix is the start of the names of path's data files in a
// hugetlbfs directory: the region's name and a hash of its full path and of
// its directory's device and inode, so that regions of the same name in
// different directories never meet, nor the same path in two containers
// (two tmpfs instances) that share one hugetlbfs mount.
func hugeTLBPrefix(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	id := abs
	var st unix.Stat_t
	if unix.Stat(filepath.Dir(abs), &st) == nil {
		id += fmt.Sprintf("\x00%d:%d", st.Dev, st.Ino)
	}
	return fmt.Sprintf("%s-%08x.", filepath.Base(path), crc32.ChecksumIEEE([]byte(id)))
}

func createHugeTLBMapping(path, dir string, size int64, perm os.FileMode, indexCap uint64) (*mapping, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return nil, fileError(dir, err)
	}
	if uint32(fs.Type) != hugetlbfsMagic {
		return nil, fmt.Errorf("%w: %s", ErrNotHugetlbfs, dir)
	}
	page := max(int64(fs.Bsize), hugePageSize)
	size = max(size, minRegionSize(indexCap))
	size = (size + page - 1) / page * page
	target := filepath.Join(dir, hugeTLBPrefix(path)+strconv.FormatInt(time.Now().UnixNano(), 36)+".data")
	f, err := os.OpenFile(target, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, fileError(target, err)
	}
	defer f.Close()
	fail := func(err error) (*mapping, error) {
		_ = os.Remove(target)
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		return fail(fileError(target, err))
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		// ENOSPC: the pool has fewer free pages than the file needs.
		return fail(fmt.Errorf("%w in %s for %d MiB: %v", errHugePoolShort, dir, size>>20, err))
	}
	mm, err := mmap.Map(f, mmap.RDWR, 0)
	if err != nil {
		return fail(fmt.Errorf("%w in %s: map %d MiB: %v", errHugePoolShort, dir, size>>20, err))
	}
	tmp := rebuildTemp(path, os.Getpid())
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		_ = mm.Unmap()
		return fail(fileError(tmp, err))
	}
	m, err := initMapping(tmp, mm, size, indexCap)
	if err != nil {
		_ = os.Remove(tmp)
		return fail(err)
	}
	m.dataPath = target
	return m, nil
}

// adoptHugeTLB notes, for a region whose path is a link to a hugetlbfs
// file, that file, so that a rebuild removes it, and removes the other files
// of this region that an earlier writer left in that directory.
func adoptHugeTLB(w *Writer, m *mapping, path string) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return
	}
	dir := filepath.Dir(target)
	var fs unix.Statfs_t
	if unix.Statfs(dir, &fs) != nil || uint32(fs.Type) != hugetlbfsMagic {
		return
	}
	m.dataPath = target
	w.cleanHugeTLB(dir, target)
}

// cleanHugeTLB removes the files of this region in the hugetlbfs dir other
// than keep: rebuilds an earlier writer died in, old files it was killed
// before removing. A file younger than the read lease may still be about
// to be opened by a reader that read an older link; it is removed later.
func (w *Writer) cleanHugeTLB(dir, keep string) {
	prefix := hugeTLBPrefix(w.path)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(dir, name)
		if !isHugeTLBFileOf(name, prefix) || p == keep {
			continue
		}
		since := time.Time{}
		if info, err := e.Info(); err == nil {
			since = info.ModTime()
		}
		w.removeLater(p, since)
	}
	w.removeDue(false)
}

// pendingRemoval is a hugetlbfs file to remove from a given time on.
type pendingRemoval struct {
	path string
	at   time.Time
}

// removeLater queues path for removal a read lease after since.
func (w *Writer) removeLater(path string, since time.Time) {
	for _, p := range w.pending {
		if p.path == path {
			return
		}
	}
	w.pending = append(w.pending, pendingRemoval{path: path, at: since.Add(w.opts.ReadLease)})
}

// removeDue removes the queued files whose time has come (all of them when
// the writer closes: a reader still opening one then fails and retries on
// the link, which names the current file).
func (w *Writer) removeDue(all bool) {
	now := time.Now()
	kept := w.pending[:0]
	for _, p := range w.pending {
		if all || !now.Before(p.at) {
			_ = os.Remove(p.path)
		} else {
			kept = append(kept, p)
		}
	}
	w.pending = kept
}

// hugeTLBRoom returns "" if the hugetlbfs dir has free pages for a file of
// size bytes, else why not.
func hugeTLBRoom(dir string, size int64) string {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return fmt.Sprintf("%s: %v", dir, err)
	}
	page := max(int64(fs.Bsize), hugePageSize)
	need := (size + page - 1) / page
	free := int64(fs.Bfree)
	if fs.Blocks == 0 {
		// A mount without size= reports no blocks: the limit is the
		// system's pool of pages of this size, less what is reserved.
		free = hugePoolFree(page)
	}
	if free < need {
		return fmt.Sprintf("%v in %s: the region needs %d pages of %d KiB, %d are free", errHugePoolShort, dir, need, page>>10, free)
	}
	return ""
}

// hugePoolFree is the number of free, unreserved huge pages of the given
// size in the system's pool (0 if it cannot be read).
func hugePoolFree(page int64) int64 {
	dir := fmt.Sprintf("/sys/kernel/mm/hugepages/hugepages-%dkB/", page>>10)
	read := func(name string) int64 {
		b, err := os.ReadFile(dir + name)
		if err != nil {
			return 0
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	return read("free_hugepages") - read("resv_hugepages")
}

// isHugeTLBFileOf reports whether name is exactly prefix, a base-36 stamp
// and ".data": one of the files createHugeTLBMapping names for the region
// whose prefix it is (and not a file of a region whose name merely starts
// the same way).
func isHugeTLBFileOf(name, prefix string) bool {
	stamp, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return false
	}
	stamp, ok = strings.CutSuffix(stamp, ".data")
	if !ok || stamp == "" {
		return false
	}
	for _, c := range stamp {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z') {
			return false
		}
	}
	return true
}
