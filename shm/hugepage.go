package shm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Huge pages. A random lookup in a large region misses the TLB on most of
// the pages it touches (index slot, node block); with 2 MiB pages the same
// TLB covers 512 times the memory. Two ways exist for a file in shared
// memory:
//
//   - Transparent huge pages on a tmpfs mounted with huge=advise,
//     huge=within_size or huge=always (Linux 4.8+). /dev/shm is usually
//     mounted without, so such a region lives in a directory of its own
//     (Options.Dir, $SHMREG_DIR). The writer creates the file without
//     fallocate, maps it with MADV_HUGEPAGE and faults every page in with
//     MADV_POPULATE_WRITE (Linux 5.14+), which reports a full file system
//     as an error instead of a SIGBUS later. Without huge pages to give
//     (fragmented memory, shmem_enabled=deny) the kernel falls back to 4 KiB
//     pages: the region works the same, only slower; Pages says which.
//   - hugetlbfs (Options.HugeTLBDir, hugetlb.go): the data file lives there
//     and the region's path is a link to it. The region's own directory
//     cannot be a hugetlbfs mount (the control file cannot live there: it
//     is written with write(2) and mapped in a piece smaller than a huge
//     page), and is refused with a clear error.
//
// Readers ask for huge pages on their own mapping too (MADV_HUGEPAGE), so
// that the kernel may map the file's huge pages with one TLB entry each.

const hugetlbfsMagic = 0x958458f6

// ErrHugetlbfs: the region directory is a hugetlbfs mount (see above).
var ErrHugetlbfs = errors.New("shm: a region's directory cannot be on hugetlbfs (the control file cannot live there); set Options.HugeTLBDir (agent: hugetlbfs_dir) to put the data file there, or use a tmpfs mounted with huge=within_size (see Huge pages in docs/AGENT.md)")

// hugeCapable reports whether files created in dir may get transparent huge
// pages: dir is on a tmpfs whose huge= option is not never, and the system
// has not denied shmem huge pages. It refuses a hugetlbfs dir.
func hugeCapable(dir string) (bool, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return false, nil // the caller's own open reports a missing dir
	}
	if uint32(fs.Type) == hugetlbfsMagic {
		return false, fmt.Errorf("%w: %s", ErrHugetlbfs, dir)
	}
	if fs.Type != unix.TMPFS_MAGIC {
		return false, nil
	}
	if b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/shmem_enabled"); err == nil && strings.Contains(string(b), "[deny]") {
		return false, nil
	}
	huge := tmpfsHugeOption(dir)
	return huge == "always" || huge == "within_size" || huge == "advise", nil
}

// tmpfsHugeOption returns the huge= option of the mount holding dir ("" if
// it has none or cannot be told).
func tmpfsHugeOption(dir string) string {
	abs, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return ""
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	best, opt := -1, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ... - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+3 >= len(fields) {
			continue
		}
		mp := unescapeMount(fields[4])
		if !(abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) || len(mp) <= best {
			continue
		}
		best, opt = len(mp), ""
		for _, o := range strings.Split(fields[sep+3], ",") {
			if v, ok := strings.CutPrefix(o, "huge="); ok {
				opt = v
			}
		}
	}
	return opt
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

const hugePageSize = 2 << 20

// populateHuge backs a fresh mapping of f with huge pages where it can: it
// asks for them and faults the whole file in. ok is false when the kernel
// cannot populate (before 5.14): the caller falls back to fallocate.
func populateHuge(mem []byte) (ok bool, err error) {
	_ = unix.Madvise(mem, unix.MADV_HUGEPAGE)
	err = unix.Madvise(mem, unix.MADV_POPULATE_WRITE)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EINVAL):
		return false, nil
	case errors.Is(err, syscall.EFAULT), errors.Is(err, syscall.ENOMEM), errors.Is(err, syscall.ENOSPC):
		return false, fmt.Errorf("%w: %d bytes: %v", ErrNoSpace, len(mem), err)
	}
	return false, err
}

// adviseHuge asks for the file's huge pages to be mapped as such; it is
// only advice, so its error is of no interest.
func adviseHuge(mem []byte) { _ = unix.Madvise(mem, unix.MADV_HUGEPAGE) }

// Pages says which page size backs a region's mapping in this process.
type Pages struct {
	// KernelPageBytes is the page size of the mapping (4096 for tmpfs
	// files, even when transparent huge pages back parts of them).
	KernelPageBytes uint64 `json:"kernel_page_bytes"`
	// HugeMappedBytes is how much of the mapping is mapped with 2 MiB
	// transparent huge pages; MappedBytes how much is mapped at all.
	HugeMappedBytes uint64 `json:"huge_mapped_bytes"`
	MappedBytes     uint64 `json:"mapped_bytes"`
	// HugeCapable: the file's directory allows transparent huge pages.
	HugeCapable bool `json:"huge_capable"`
}

func (p Pages) String() string {
	if p.KernelPageBytes > 4096 {
		return fmt.Sprintf("%d MiB (hugetlbfs)", p.KernelPageBytes>>20)
	}
	if p.HugeMappedBytes == 0 {
		s := fmt.Sprintf("%d KiB", p.KernelPageBytes>>10)
		if !p.HugeCapable {
			s += " (no transparent huge pages: the directory is not a tmpfs mounted with huge=)"
		}
		return s
	}
	return fmt.Sprintf("2 MiB for %d of %d MiB mapped, %d KiB for the rest", p.HugeMappedBytes>>20, p.MappedBytes>>20, p.KernelPageBytes>>10)
}

// pages reads /proc/self/smaps for m's mapping, after mapping every page
// (MADV_POPULATE_READ) so that the figures describe the whole file.
func (m *mapping) pages() (Pages, error) {
	_ = unix.Madvise(m.mem, unix.MADV_POPULATE_READ)
	capable, _ := hugeCapable(filepath.Dir(m.path))
	p := Pages{HugeCapable: capable}
	start := uint64(uintptr(unsafe.Pointer(&m.mem[0])))
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return p, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		if lo, rest, ok := strings.Cut(line, "-"); ok && !strings.Contains(lo, ":") && len(rest) > 0 && !strings.HasSuffix(strings.Fields(line)[0], ":") {
			a, err := strconv.ParseUint(lo, 16, 64)
			if in && err == nil {
				break // the next mapping
			}
			in = err == nil && a == start
			continue
		}
		if !in {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "KernelPageSize":
			p.KernelPageBytes = n << 10
		case "Rss":
			p.MappedBytes = n << 10
		case "ShmemPmdMapped", "FilePmdMapped":
			p.HugeMappedBytes += n << 10
		}
	}
	if p.KernelPageBytes == 0 {
		return p, fmt.Errorf("shm: the mapping of %s is not in /proc/self/smaps", m.path)
	}
	return p, sc.Err()
}

// Pages reports which page sizes back the region's current file in this
// process, mapping the whole file to tell.
func (r *Reader) Pages() (Pages, error) {
	h, m, err := r.begin()
	if err != nil {
		return Pages{}, err
	}
	defer r.end(h)
	return m.pages()
}
