/*
 * coil_install: unmodified blocking code runs concurrently inside tasklets.
 *
 * How calls are diverted. coil_install rewrites, in every loaded object but
 * the C library, the dynamic loader and the object coil itself is in, the
 * GOT slots (the JUMP_SLOT and GLOB_DAT relocations, and function pointers
 * kept in data: R_X86_64_64/R_AARCH64_ABS64) of the libc functions that
 * src/unix/wrap.c wraps (coil__wraps) so that they point at coil's wrappers;
 * coil_uninstall puts the saved values back where the wrappers still are, in
 * objects still loaded. coil's own calls to libc go through its own GOT,
 * which is never patched, so a wrapper reaches the real function by simply
 * calling it. Nothing is exported under libc's names, so a program that
 * never calls coil_install (and has no COIL_INSTALL=1 in its environment)
 * runs exactly as without coil.
 *
 * What each wrapper does is in src/unix/wrap.c.
 */
#include "internal.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

bool coil__installed; /* read by every wrapper, first thing (internal.h) */

/* ---- patching the GOT ----------------------------------------------------------- */

struct patch {
    void **slot;
    void *orig;
    void *wrapper; /* what was written: restored only if still there */
};

static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static struct patch *patches;
static size_t npatches, cappatches;
static size_t page_size;

/* The process's mappings and their protection, read from /proc/self/maps at
 * each coil_install and coil_uninstall (both rare). A slot in a read-only
 * page (a RELRO region the loader has protected) is written with the page
 * made writable for the moment and then read-only again; a slot in a
 * writable page is written as it is. Guessing "read-only" from the ELF
 * headers alone is wrong twice: for an object the loader is still relocating
 * (another thread's dlopen; the loader would fault on a page made read-only
 * under it) and for the part of a RELRO region that shares its last page
 * with writable data (glibc protects whole pages only). */
struct region {
    uintptr_t lo, hi;
    bool writable;
};
static struct region *regions;
static size_t nregions;

static void regions_free(void) {
    free(regions);
    regions = NULL;
    nregions = 0;
}

static int regions_load(void) {
    regions_free();
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t cap = 0, len = 0;
    char *buf = NULL;
    for (;;) {
        if (cap - len < 4096) {
            char *b = realloc(buf, cap = cap ? cap * 2 : 16384);
            if (!b) {
                free(buf);
                close(fd);
                return -ENOMEM;
            }
            buf = b;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    regions = malloc((lines + 1) * sizeof *regions);
    if (!regions) {
        free(buf);
        return -ENOMEM;
    }
    /* Each line: "lo-hi perms offset dev inode path", addresses in hex. */
    for (char *line = buf; *line;) {
        char *end, *nl = strchr(line, '\n');
        struct region r;
        r.lo = (uintptr_t)strtoull(line, &end, 16);
        if (*end == '-') {
            r.hi = (uintptr_t)strtoull(end + 1, &end, 16);
            if (*end == ' ' && end[1] && end[2]) {
                r.writable = end[2] == 'w';
                regions[nregions++] = r;
            }
        }
        if (!nl) break;
        line = nl + 1;
    }
    free(buf);
    return 0;
}

/* 1 if the page of addr is writable now, 0 if not, -1 if it is not mapped. */
static int page_writable(uintptr_t addr) {
    size_t lo = 0, hi = nregions; /* the kernel lists mappings in address order */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (addr < regions[mid].lo)
            hi = mid;
        else if (addr >= regions[mid].hi)
            lo = mid + 1;
        else
            return regions[mid].writable;
    }
    return -1;
}

/* Writes value into slot, whose page is writable (w = 1) or read-only (0). */
static int write_slot(void **slot, void *value, int w) {
    if (w) {
        __atomic_store_n(slot, value, __ATOMIC_RELEASE);
        return 0;
    }
    uintptr_t page = (uintptr_t)slot & ~(uintptr_t)(page_size - 1);
    if (mprotect((void *)page, page_size, PROT_READ | PROT_WRITE) != 0) return -errno;
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    mprotect((void *)page, page_size, PROT_READ);
    return 0;
}

/* The wrapper name is diverted to, or NULL: the libc calls of wrap.c, then
 * the pthread locks and semaphores of locks.c and, if tsd, thread-specific
 * data (tsd.c). */
static const struct coil__wrap *wrapper_of(const char *name, bool tsd) {
    for (size_t i = 0; i < coil__nwraps; i++)
        if (strcmp(name, coil__wraps[i].name) == 0) return &coil__wraps[i];
    if ((name[0] == 'p' && strncmp(name, "pthread_", 8) == 0) ||
        (name[0] == 's' && strncmp(name, "sem_", 4) == 0))
        for (size_t i = 0; i < coil__nlock_wraps; i++)
            if (strcmp(name, coil__lock_wraps[i].name) == 0) return &coil__lock_wraps[i];
    if (tsd && name[0] == 'p')
        for (size_t i = 0; i < coil__ntsd_wraps; i++)
            if (strcmp(name, coil__tsd_wraps[i].name) == 0) return &coil__tsd_wraps[i];
    return NULL;
}

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define R_GLOB_DAT  R_X86_64_GLOB_DAT
#define R_ABS64     R_X86_64_64
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define R_GLOB_DAT  R_AARCH64_GLOB_DAT
#define R_ABS64     R_AARCH64_ABS64
#else
#error "coil_install: the relocation types of this architecture"
#endif

struct object {
    ElfW(Addr) base;
    const ElfW(Sym) * symtab;
    const char *strtab;
    uintptr_t span; /* the end of its highest segment, as an offset from base */
    bool
        keep_tsd; /* a sanitizer runtime or a malloc: its thread-specific data stays the thread's */
    int err;
};

/* The relocations that hold a function's address: PLT slots (JUMP_SLOT),
 * GOT entries of address-taking code (GLOB_DAT), and function pointers
 * stored in data (R_X86_64_64 / R_AARCH64_ABS64 with no addend: a table
 * such as SQLite's list of the system calls it uses). */
static void patch_relocs(struct object *o, const ElfW(Rela) * r, size_t size) {
    if (!r) return;
    for (size_t i = 0; i < size / sizeof *r && !o->err; i++) {
        unsigned type = (unsigned)ELF64_R_TYPE(r[i].r_info);
        if (type != R_JUMP_SLOT && type != R_GLOB_DAT && !(type == R_ABS64 && r[i].r_addend == 0))
            continue;
        unsigned symi = (unsigned)ELF64_R_SYM(r[i].r_info);
        if (!symi) continue;
        const ElfW(Sym) *sym = &o->symtab[symi];
        const struct coil__wrap *w = wrapper_of(o->strtab + sym->st_name, !o->keep_tsd);
        if (!w) continue;
        void **slot = (void **)(o->base + r[i].r_offset);
        void *orig = *slot;
        if (orig == w->wrapper) continue; /* installed already */
        /* Not relocated yet (the loader is still at work on this object, for
         * a dlopen on another thread): a link-time value, an offset into the
         * object (a lazy PLT slot) or the addend (0), where a relocated one
         * is an address in the process's mappings. The loader will put the
         * real address there; a later coil_install diverts it. (The main
         * executable, base 0, is relocated before any code runs.) */
        if (o->base && (uintptr_t)orig < o->span) continue;
        if (npatches == cappatches) {
            size_t cap = cappatches ? cappatches * 2 : 64;
            struct patch *p = realloc(patches, cap * sizeof *p);
            if (!p) {
                o->err = -ENOMEM;
                return;
            }
            patches = p;
            cappatches = cap;
        }
        /* Not in the view of the mappings: mapped after it was read (a
         * dlopen on another thread), so the loader is still at work on it. */
        int writable = page_writable((uintptr_t)slot);
        if (writable < 0) continue;
        int err = write_slot(slot, w->wrapper, writable);
        if (err) {
            o->err = err;
            return;
        }
        patches[npatches++] = (struct patch){slot, orig, w->wrapper};
    }
}

/* glibc has relocated the pointers of the dynamic section in place (the
 * vDSO's are not): an address below the load base is still relative. */
static uintptr_t dyn_ptr(ElfW(Addr) p, ElfW(Addr) base) {
    return p < base ? p + base : p;
}

/* What a walk over the loaded objects carries. The view of the mappings is
 * read at its first object, inside dl_iterate_phdr, that is under the
 * loader's lock: no object joins or leaves the list meanwhile, so every
 * listed object's pages are in the view, and an address cannot be unmapped
 * and mapped again for another object between the view and the walk (a view
 * read before the walk could call a page read-only that now belongs to an
 * object the loader is still relocating: the likely cause of one failure of
 * test_install_dlopen's race case under Valgrind, whose thread switches make
 * such windows wide). A RELRO page goes only from
 * writable to read-only while listed, so a stale "writable" errs safe. */
struct walk {
    int err;
    bool viewed;
};

static bool walk_view(struct walk *w) {
    if (!w->viewed) {
        w->viewed = true;
        w->err = regions_load();
    }
    return w->err == 0;
}

static int patch_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct walk *walk = data;
    if (!walk_view(walk)) return 1;
    int *errp = &walk->err;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    /* libc and the loader call each other internally; the vDSO has no GOT. */
    if (strstr(name, "linux-vdso") || strstr(name, "/ld-linux") || strstr(name, "/libc.so."))
        return 0;
    struct object o = {.base = info->dlpi_addr};
    const ElfW(Dyn) *dyn = NULL;
    uintptr_t me = (uintptr_t)(void *)coil_install;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = o.base + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (ph->p_type == PT_DYNAMIC) dyn = (const ElfW(Dyn) *)lo;
        if (ph->p_type == PT_LOAD && ph->p_vaddr + ph->p_memsz > o.span)
            o.span = ph->p_vaddr + ph->p_memsz;
        if (ph->p_type == PT_GNU_RELRO) {
            /* The loader makes the whole pages of this region read-only
             * once it has relocated the object. Still writable: another
             * thread's dlopen is relocating it now; leave it to the loader
             * (a later coil_install diverts it). */
            uintptr_t first = lo & ~(uintptr_t)(page_size - 1);
            uintptr_t last = hi & ~(uintptr_t)(page_size - 1);
            if (first < last && page_writable(first) == 1) return 0;
        }
        if (ph->p_type == PT_LOAD && me >= lo && me < hi) return 0; /* coil's own object */
        for (size_t k = 0; k < sizeof coil__tsd_keep / sizeof coil__tsd_keep[0]; k++)
            if (ph->p_type == PT_LOAD && coil__tsd_keep[k] >= lo && coil__tsd_keep[k] < hi)
                o.keep_tsd = true;
    }
    if (!dyn) return 0;
    const ElfW(Rela) *jmprel = NULL, *rela = NULL;
    size_t jmprelsz = 0, relasz = 0;
    for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_SYMTAB: o.symtab = (const void *)dyn_ptr(d->d_un.d_ptr, o.base); break;
        case DT_STRTAB: o.strtab = (const void *)dyn_ptr(d->d_un.d_ptr, o.base); break;
        case DT_JMPREL: jmprel = (const void *)dyn_ptr(d->d_un.d_ptr, o.base); break;
        case DT_PLTRELSZ: jmprelsz = d->d_un.d_val; break;
        case DT_RELA: rela = (const void *)dyn_ptr(d->d_un.d_ptr, o.base); break;
        case DT_RELASZ: relasz = d->d_un.d_val; break;
        default: break;
        }
    }
    if (!o.symtab || !o.strtab) return 0;
    patch_relocs(&o, jmprel, jmprelsz);
    patch_relocs(&o, rela, relasz);
    if (o.err) *errp = o.err;
    return o.err ? 1 : 0;
}

/* A forked child has no scheduler: its calls go straight to libc, even if
 * fork was called from a tasklet. */
static void forget_scheduler_in_child(void) {
    coil__sched_cur = NULL;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) {
    pthread_atfork(NULL, NULL, forget_scheduler_in_child);
}

int coil_install(void) {
    int saved = errno;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&install_lock);
    if (!page_size) page_size = (size_t)sysconf(_SC_PAGESIZE);
    coil__tsd_probe();
    struct walk walk = {0};
    dl_iterate_phdr(patch_object, &walk);
    regions_free();
    int err = walk.err;
    if (!err) __atomic_store_n(&coil__installed, true, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&install_lock);
    errno = saved;
    return err;
}

/* After a dlopen the wrapper made (w_dlopen, src/unix/wrap.c): the objects
 * it loaded are diverted now, as a second coil_install would; nothing if coil
 * is not installed. The walk is idempotent (a diverted slot is skipped).
 * dlopen has returned, so the loader's lock is free; a dlopen from a
 * constructor of an object being loaded runs with that lock held by this
 * thread, which dl_iterate_phdr takes again (it is recursive), and the
 * objects the outer load is still relocating are left alone as in
 * coil_install. Errors are not the dlopen's: they leave the new objects as
 * they are (libc's calls), as a failed coil_install would. */
void coil__install_loaded(void) {
    int saved = errno;
    pthread_mutex_lock(&install_lock);
    if (coil__is_installed()) {
        struct walk walk = {0};
        dl_iterate_phdr(patch_object, &walk);
        regions_free();
    }
    pthread_mutex_unlock(&install_lock);
    errno = saved;
}

/* Puts back the saved values of the slots inside this object, if they still
 * hold the wrapper. Runs under the loader's lock (dl_iterate_phdr), so the
 * object cannot be unloaded meanwhile; slots of objects unloaded since
 * coil_install are in no object and are left alone (writing there would
 * write into unmapped memory, or into whatever was mapped there since). */
static int unpatch_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    if (!walk_view(data)) return 1;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        for (size_t k = 0; k < npatches; k++) {
            struct patch *p = &patches[k];
            if (!p->slot || (uintptr_t)p->slot < lo || (uintptr_t)p->slot >= hi) continue;
            int writable = page_writable((uintptr_t)p->slot);
            if (writable >= 0 && __atomic_load_n(p->slot, __ATOMIC_ACQUIRE) == p->wrapper)
                write_slot(p->slot, p->orig, writable);
            p->slot = NULL; /* done */
        }
    }
    return 0;
}

int coil_uninstall(void) {
    int saved = errno;
    pthread_mutex_lock(&install_lock);
    __atomic_store_n(&coil__installed, false, __ATOMIC_RELAXED);
    /* Without a view of the mappings nothing can be written safely: the
     * wrappers stay (they pass every call through once `installed` is
     * false). */
    struct walk walk = {0};
    if (npatches) dl_iterate_phdr(unpatch_object, &walk);
    regions_free();
    free(patches);
    patches = NULL;
    npatches = cappatches = 0;
    pthread_mutex_unlock(&install_lock);
    errno = saved;
    return 0;
}

/* COIL_INSTALL=1 in the environment: installed when coil is loaded, for
 * programs that cannot call coil_install themselves. */
__attribute__((constructor)) static void install_from_environment(void) {
    const char *v = getenv("COIL_INSTALL");
    if (v && strcmp(v, "1") == 0) coil_install();
}
