package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"

	"github.com/shmreg/shmreg/skiplist"
)

// mapping is one mapped data file. A reader's mapping is read-only; the
// writer's is read-write. A mapping never changes size: growing the region
// means a new file and a new mapping.
type mapping struct {
	path string
	mem  mmap.MMap
	hdr  *dataHeader
	list skiplist.List

	// dataPath is, for a region whose data file lives on hugetlbfs, that
	// file; path (or its temporary name) is then a symbolic link to it.
	dataPath string

	// table is the index table last validated, reused by lookups for as
	// long as the header points at it with the same capacity (a published
	// table's capacity never changes; its slot slice was bounded by the
	// mapping when it was validated).
	table atomic.Pointer[table]
}

// openMapping maps the data file at path and validates its header.
func openMapping(path string, writable bool) (*mapping, error) {
	flag, prot := os.O_RDONLY, mmap.RDONLY
	if writable {
		flag, prot = os.O_RDWR, mmap.RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fileError(path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileError(path, err)
	}
	if fi.Size() < headerSize+int64(skiplist.NodeSize(skiplist.MaxHeight)) {
		return nil, fmt.Errorf("%w: %s is %d bytes", ErrTruncated, path, fi.Size())
	}
	mm, err := mmap.Map(f, prot, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: map %s: %w", path, err)
	}
	adviseHuge(mm)
	m := &mapping{path: path, mem: mm, hdr: headerAt(mm)}
	if err := m.validate(); err != nil {
		_ = mm.Unmap()
		return nil, err
	}
	return m, nil
}

// validate checks everything a reader relies on before following an offset
// found in the header.
func (m *mapping) validate() error {
	h := m.hdr
	if string(h.magic[:]) != dataMagic {
		return fmt.Errorf("%w: %s", ErrBadMagic, m.path)
	}
	if h.version < oldestReadableVersion || h.version > LayoutVersion {
		return fmt.Errorf("%w: %s has layout version %d, this build reads versions %d to %d", ErrLayoutVersion, m.path, h.version, oldestReadableVersion, LayoutVersion)
	}
	if h.headerSize != headerSize || h.poolStart != headerSize || h.maxHeight != skiplist.MaxHeight {
		return fmt.Errorf("%w: %s has header size %d, pool start %d, max height %d", ErrCorrupt, m.path, h.headerSize, h.poolStart, h.maxHeight)
	}
	if h.fileSize > uint64(len(m.mem)) {
		return fmt.Errorf("%w: %s is %d bytes but its header says %d", ErrTruncated, m.path, len(m.mem), h.fileSize)
	}
	if h.fileSize != uint64(len(m.mem)) {
		return fmt.Errorf("%w: %s is %d bytes but its header says %d", ErrCorrupt, m.path, len(m.mem), h.fileSize)
	}
	l, err := skiplist.New(m.mem, headerSize, h.head)
	if err != nil {
		return fmt.Errorf("%s: %w", m.path, err)
	}
	m.list = l
	return nil
}

func (m *mapping) unmap() error {
	if m == nil || m.mem == nil {
		return nil
	}
	err := m.mem.Unmap()
	m.mem = nil
	return err
}

func (m *mapping) size() uint64 { return uint64(len(m.mem)) }

func (m *mapping) loadState() uint64      { return atomic.LoadUint64(&m.hdr.state) }
func (m *mapping) loadGeneration() uint64 { return atomic.LoadUint64(&m.hdr.generation) }

// createMapping creates a new data file of size bytes at a temporary name
// beside path, pre-allocates it so that a full /dev/shm fails here and not
// with SIGBUS later, and writes an empty region into it. The caller fills
// it and publishes it with publish.
func createMapping(path string, size int64, perm os.FileMode, indexCap uint64) (*mapping, error) {
	if size < minRegionSize(indexCap) {
		size = minRegionSize(indexCap)
	}
	huge, err := hugeCapable(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	if huge {
		size = (size + hugePageSize - 1) &^ (hugePageSize - 1)
	}
	tmp := rebuildTemp(path, os.Getpid())
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, fileError(tmp, err)
	}
	defer f.Close()
	fail := func(err error) (*mapping, error) {
		_ = os.Remove(tmp)
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		return fail(fileError(tmp, err))
	}
	var mm mmap.MMap
	if huge {
		// Fault the file in through a mapping that asked for huge pages
		// (fallocate would back it with small ones); the kernel reports a
		// full file system here as it would for fallocate.
		if err := f.Truncate(size); err != nil {
			return fail(fileError(tmp, err))
		}
		if mm, err = mmap.Map(f, mmap.RDWR, 0); err != nil {
			return fail(fmt.Errorf("shm: map %s: %w", tmp, err))
		}
		populated, err := populateHuge(mm)
		if err == nil && !populated {
			err = allocate(f, tmp, size) // a kernel before 5.14
		}
		if err != nil {
			_ = mm.Unmap()
			return fail(fmt.Errorf("%s: %w", tmp, err))
		}
	} else {
		if err := allocate(f, tmp, size); err != nil {
			return fail(err)
		}
		if mm, err = mmap.Map(f, mmap.RDWR, 0); err != nil {
			return fail(fmt.Errorf("shm: map %s: %w", tmp, err))
		}
	}
	m, err := initMapping(tmp, mm, size, indexCap)
	if err != nil {
		return fail(err)
	}
	return m, nil
}

// initMapping writes an empty region into mm, a fresh mapping of size
// bytes of the file at path; on failure it unmaps mm.
func initMapping(path string, mm mmap.MMap, size int64, indexCap uint64) (*mapping, error) {
	m := &mapping{path: path, mem: mm, hdr: headerAt(mm)}
	fail := func(err error) (*mapping, error) {
		_ = mm.Unmap()
		return nil, err
	}
	h := m.hdr
	copy(h.magic[:], dataMagic)
	h.version = LayoutVersion
	h.headerSize = headerSize
	h.fileSize = uint64(size)
	h.poolStart = headerSize
	h.createdNs = uint64(time.Now().UnixNano())
	h.maxHeight = skiplist.MaxHeight
	h.alloc = headerSize
	h.valueAlloc = uint64(size)
	h.head, _ = m.alloc(skiplist.NodeSize(skiplist.MaxHeight))
	if err := skiplist.InitHead(mm, headerSize, h.head); err != nil {
		return fail(err)
	}
	ix, err := m.newIndex(indexCap, m.alloc)
	if err != nil {
		return fail(err)
	}
	h.index = ix
	h.generation = 1
	if err := m.validate(); err != nil {
		return fail(err)
	}
	return m, nil
}

// allocate reserves size bytes for f, so that a full file system fails
// here and not with SIGBUS at a later store.
func allocate(f *os.File, name string, size int64) error {
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("%w: %s needs %d bytes: %v", ErrNoSpace, name, size, err)
		}
		if !errors.Is(err, syscall.EOPNOTSUPP) {
			return fmt.Errorf("shm: allocate %s: %w", name, err)
		}
		// A file system without fallocate: fall back to a sparse file.
		if err := f.Truncate(size); err != nil {
			return fileError(name, err)
		}
	}
	return nil
}

// publish renames a mapping made by createMapping over path: from this
// instant, opening path finds it.
func (m *mapping) publish(path string) error {
	if err := os.Rename(m.path, path); err != nil {
		m.remove()
		return fmt.Errorf("shm: publish %s: %w", path, err)
	}
	m.path = path
	return nil
}

// Replacing a region's file is three steps: rename the new file over the
// path, mark the old one superseded (readers move when they see the mark),
// forget the old one. A writer killed between the first two would leave
// readers on an old file that nobody can reach by name to mark. So before
// the rename the old file gets a second name, path.superseding, which is
// removed only after the mark; the next writer finds it and finishes the
// job (finishReplace).

func supersedingPath(path string) string { return path + ".superseding" }

// replace publishes nm over path in place of old, which must be the file at
// path, and marks old superseded.
func replace(old, nm *mapping, path string) error {
	link := supersedingPath(path)
	_ = os.Remove(link)
	if err := os.Link(path, link); err != nil {
		nm.remove()
		return fmt.Errorf("shm: keep %s reachable while it is replaced: %w", path, err)
	}
	if err := nm.publish(path); err != nil {
		_ = os.Remove(link)
		return err
	}
	atomic.StoreUint64(&old.hdr.state, old.loadState()|stateSuperseded)
	_ = os.Remove(link)
	return nil
}

// remove deletes an unpublished mapping's files: its name and, on
// hugetlbfs, the file that name links to.
func (m *mapping) remove() {
	_ = os.Remove(m.path)
	if m.dataPath != "" {
		_ = os.Remove(m.dataPath)
	}
}

// finishReplace completes a replacement its writer did not finish, and
// removes the temporary files of rebuilds that died before they were
// published. Only the writer (holding the control file's lock) calls it.
func finishReplace(path string) error {
	tmps, _ := filepath.Glob(rebuildTemp(globEscape(path), -1))
	ctlTmps, _ := filepath.Glob(globEscape(ctlPath(path)) + ".new-*")
	for _, t := range append(tmps, ctlTmps...) {
		if target, err := os.Readlink(t); err == nil && isHugeTLBFileOf(filepath.Base(target), hugeTLBPrefix(path)) {
			_ = os.Remove(target) // a rebuild onto hugetlbfs that died unpublished
		}
		_ = os.Remove(t)
	}
	link := supersedingPath(path)
	lfi, err := os.Stat(link)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fileError(link, err)
	}
	pfi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Nothing replaced it: the old file is still the region.
		if err := os.Rename(link, path); err != nil {
			return fileError(path, err)
		}
		return nil
	case err != nil:
		return fileError(path, err)
	case os.SameFile(lfi, pfi):
		// Killed before the rename: the old file is still current.
		return os.Remove(link)
	}
	// An old file too damaged to map cannot be marked; its readers keep
	// what they have. Dropping its second name beats refusing to write.
	if old, err := openMapping(link, true); err == nil {
		atomic.StoreUint64(&old.hdr.state, old.loadState()|stateSuperseded)
		_ = old.unmap()
	}
	return os.Remove(link)
}

// rebuildTemp is the name a rebuild of path builds its new file under,
// before publishing it; pid -1 gives the glob pattern of every such name.
func rebuildTemp(path string, pid int) string {
	if pid < 0 {
		return path + ".rebuild-*.tmp"
	}
	return path + ".rebuild-" + strconv.Itoa(pid) + ".tmp"
}

// globEscape quotes the pattern characters of a path for filepath.Glob.
func globEscape(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func minRegionSize(indexCap uint64) int64 {
	return int64(headerSize + skiplist.NodeSize(skiplist.MaxHeight) + indexHeaderSize + 8*indexCap + 4096)
}

// The writer's allocator is two bump cursors that grow toward each other:
// nodes, keys and index tables from the bottom of the pool, values from the
// top. Keeping the small, hot structures a lookup walks (index slot, node,
// key) dense and apart from the values makes a lookup touch fewer pages,
// which is what a random lookup pays for. These cursors only grow; reuse
// is the writer's free lists (reclaim.go), and ErrFull here means the
// cursors met.

// alloc takes size bytes, 8-byte aligned, from the bottom cursor. Every
// block is as large as its size class, whoever allocates it, so that any
// block can later be retired to its class's free list.
func (m *mapping) alloc(size uint64) (uint64, error) {
	size, _, _ = sizeClass(size)
	off := (m.hdr.alloc + 7) &^ 7
	if cacheLines(off, size) > cacheLines(0, size) {
		// A lookup reads a node's header and its key together: a block that
		// would straddle one more cache line than it must starts on the next
		// line instead. It costs under a line of padding, and saves a
		// dependent cache miss on most lookups.
		off = (off + cacheLine - 1) &^ (cacheLine - 1)
	}
	if size > m.hdr.valueAlloc || off > m.hdr.valueAlloc-size {
		return 0, ErrFull
	}
	m.hdr.alloc = off + size
	return off, nil
}

const cacheLine = 64

// cacheLines is how many cache lines the bytes [off, off+size) touch.
func cacheLines(off, size uint64) uint64 {
	return (off%cacheLine + size + cacheLine - 1) / cacheLine
}

// allocValue takes size bytes, 8-byte aligned, from the top cursor.
func (m *mapping) allocValue(size uint64) (uint64, error) {
	size, _, _ = sizeClass(size)
	end := m.hdr.valueAlloc
	if size > end {
		return 0, ErrFull
	}
	off := (end - size) &^ 7
	if off < m.hdr.alloc {
		return 0, ErrFull
	}
	m.hdr.valueAlloc = off
	return off, nil
}

// storeValue copies value into fresh pool bytes and returns its pair word.
func (m *mapping) storeValue(value []byte) (uint64, error) {
	off, err := m.allocValue(uint64(len(value)))
	if err != nil {
		return 0, err
	}
	copy(m.mem[off:], value)
	return skiplist.Pair(off, uint64(len(value))), nil
}

// fileError turns an os error into one that names the region and wraps the
// matching sentinel.
func fileError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s", ErrNoRegion, path)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("shm: %s: %w", path, err)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: %s: %v", ErrNoSpace, path, err)
	}
	return fmt.Errorf("shm: %s: %w", path, err)
}
