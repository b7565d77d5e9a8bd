// SPDX-License-Identifier: GPL-2.0

//! The packet path behind the hooks: parsing headers, the rules (published with RCU, so a
//! packet sees the old set or the new one, never half of either), packet records with ipl's
//! repeat collapse, and per-source connection limits.

use core::mem::size_of;

use kernel::{
    ffi::c_int,
    new_spinlock_irq,
    prelude::*,
    sync::{
        atomic::{ordering::Acquire, ordering::Full, ordering::Relaxed, Atomic},
        SpinLockIrq,
    },
    types::Opaque,
};

use crate::abi::{
    self, action, direction, tcp_flag, LimitBody, PacketBody, PacketMeta, Pod, RuleSet, RuleStats,
    MAX_RULES, PKF_BODY, PKF_NO_HEADER, PKF_TRUNCATED,
};
use crate::bindings::{self, net_device, sk_buff, timer_list};
use crate::log::Log;

/// What the hooks learn from a packet's headers.
#[derive(Clone, Copy, Default)]
pub(crate) struct Parsed {
    pub(crate) family: u16,
    pub(crate) protocol: u8,
    /// Bytes of IP header, options or extension headers included.
    pub(crate) ip_hlen: usize,
    /// Bytes of TCP or UDP header (0 for other protocols and for later fragments).
    pub(crate) l4_hlen: usize,
    pub(crate) saddr: [u8; 16],
    pub(crate) daddr: [u8; 16],
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) tcp_flags: u8,
    /// Bytes in the skb (a GSO packet counts once, as interfaces count it).
    pub(crate) skb_len: u32,
    /// The IP packet's own length field.
    pub(crate) orig_len: u32,
}

/// Copies `out.len()` bytes of the packet from `off`; false if the packet is shorter.
///
/// # Safety
///
/// `skb` must be a valid packet whose data starts at its network header.
unsafe fn copy(skb: *const sk_buff, off: usize, out: &mut [u8]) -> bool {
    // SAFETY: `out` is writable for its length; `skb_copy_bits` checks the bounds of the packet,
    // linear or paged, and fails without writing past `out`.
    unsafe {
        bindings::skb_copy_bits(
            skb,
            off as c_int,
            out.as_mut_ptr().cast(),
            out.len() as c_int,
        ) == 0
    }
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Reads a packet's IP and transport headers.
///
/// # Safety
///
/// `skb` must be a valid packet at a netfilter IPv4 or IPv6 hook (its data at the IP header).
pub(crate) unsafe fn parse(skb: *const sk_buff, family: u16) -> Option<Parsed> {
    let mut p = Parsed {
        family,
        // SAFETY: `skb` is valid.
        skb_len: unsafe { (*skb).len },
        ..Parsed::default()
    };
    let mut l4_off;
    let frag;
    if family == abi::AF_INET {
        let mut h = [0u8; 20];
        // SAFETY: As the function requires.
        if !unsafe { copy(skb, 0, &mut h) } || h[0] >> 4 != 4 {
            return None;
        }
        p.ip_hlen = usize::from(h[0] & 0xf) * 4;
        p.orig_len = u32::from(be16(&h[2..]));
        p.protocol = h[9];
        frag = be16(&h[6..]) & 0x1fff != 0;
        p.saddr[..4].copy_from_slice(&h[12..16]);
        p.daddr[..4].copy_from_slice(&h[16..20]);
        l4_off = p.ip_hlen;
    } else {
        let mut h = [0u8; 40];
        // SAFETY: As the function requires.
        if !unsafe { copy(skb, 0, &mut h) } || h[0] >> 4 != 6 {
            return None;
        }
        p.orig_len = 40 + u32::from(be16(&h[4..]));
        p.saddr.copy_from_slice(&h[8..24]);
        p.daddr.copy_from_slice(&h[24..40]);
        let mut next = h[6];
        let mut frag_off: u16 = 0;
        // SAFETY: `skb` is valid; the function walks the extension headers within the packet.
        let off = unsafe { bindings::ipv6_skip_exthdr(skb, 40, &mut next, &mut frag_off) };
        if off < 0 {
            return None;
        }
        p.protocol = next;
        l4_off = off as usize;
        p.ip_hlen = l4_off;
        // The fragment offset is in the upper 13 bits.
        frag = u16::from_be(frag_off) & !7 != 0;
    }
    if frag {
        l4_off = 0;
    }
    if l4_off != 0 && p.protocol == abi::IPPROTO_TCP {
        let mut t = [0u8; 20];
        // SAFETY: As the function requires.
        if unsafe { copy(skb, l4_off, &mut t) } {
            p.sport = be16(&t[0..]);
            p.dport = be16(&t[2..]);
            p.l4_hlen = usize::from(t[12] >> 4) * 4;
            p.tcp_flags = t[13];
        }
    } else if l4_off != 0 && p.protocol == abi::IPPROTO_UDP {
        let mut u = [0u8; 8];
        // SAFETY: As the function requires.
        if unsafe { copy(skb, l4_off, &mut u) } {
            p.sport = be16(&u[0..]);
            p.dport = be16(&u[2..]);
            p.l4_hlen = 8;
        }
    }
    Some(p)
}

/// A published rule set with its counters.
struct ActiveRules {
    set: RuleSet,
    packets: [Atomic<u64>; MAX_RULES],
    bytes: [Atomic<u64>; MAX_RULES],
    /// Which publication this is: connection-limit counts belong to one.
    generation: u64,
}

impl ActiveRules {
    fn new(set: RuleSet, generation: u64) -> Result<KBox<Self>> {
        Ok(KBox::new(
            ActiveRules {
                set,
                packets: core::array::from_fn(|_| Atomic::new(0)),
                bytes: core::array::from_fn(|_| Atomic::new(0)),
                generation,
            },
            GFP_KERNEL,
        )?)
    }
}

/// Room for a packet's bytes in a record.
const MAX_DATA: usize =
    abi::MAX_RECORD_LEN - size_of::<abi::RecordHeader>() - size_of::<PacketBody>();
/// An IP header longer than this is not logged (the whole header or nothing): with the largest
/// TCP header and snap length, the record still fits.
const MAX_IP_HEADER: usize = MAX_DATA - 60 - abi::MAX_SNAP_LEN as usize;
/// How long a record waits for repeats of its packet before it is written.
const REPEAT_WINDOW_MS: u32 = 250;

/// A packet record being built, or waiting for repeats.
struct PacketRec {
    body: PacketBody,
    time_ns: u64,
    boot_ns: u64,
    data: KVVec<u8>,
    len: usize,
}

impl PacketRec {
    fn new() -> Result<Self> {
        Ok(PacketRec {
            body: PacketBody::default(),
            time_ns: 0,
            boot_ns: 0,
            data: KVVec::from_elem(0u8, MAX_DATA, GFP_KERNEL)?,
            len: 0,
        })
    }

    /// The byte ranges of `data` that differ between otherwise identical packets: the IPv4
    /// identification and header checksum, and the transport checksum.
    fn volatile_ranges(&self) -> [(usize, usize); 3] {
        let b = &self.body;
        let ip = usize::from(b.ip_hlen);
        let mut r = [(0, 0); 3];
        if ip != 0 && b.family == abi::AF_INET {
            r[0] = (4, 2);
            r[1] = (10, 2);
        }
        let csum = match b.protocol {
            abi::IPPROTO_TCP => 16,
            abi::IPPROTO_UDP => 6,
            _ => return r,
        };
        if usize::from(b.l4_hlen) >= csum + 2 {
            r[2] = (ip + csum, 2);
        }
        r
    }

    /// Whether `other` is the same packet again.
    fn same_as(&self, other: &PacketRec) -> bool {
        let (a, b) = (&self.body, &other.body);
        let same_meta = PacketBody {
            count: 0,
            last_ns: 0,
            ..*a
        } == PacketBody {
            count: 0,
            last_ns: 0,
            ..*b
        };
        if !same_meta || self.len != other.len {
            return false;
        }
        let skip = self.volatile_ranges();
        let x = &self.data[..self.len];
        let y = &other.data[..other.len];
        x.iter()
            .zip(y)
            .enumerate()
            .all(|(i, (p, q))| p == q || skip.iter().any(|&(off, n)| (off..off + n).contains(&i)))
    }
}

/// The record waiting for repeats, and scratch space for the next one.
struct Pending {
    waiting: bool,
    held: PacketRec,
    next: PacketRec,
}

/// Concurrent connections per source, for rules with a connection limit.
#[derive(Clone, Copy, Default)]
struct LimitSlot {
    used: bool,
    generation: u64,
    netns: u32,
    rule: u16,
    family: u16,
    src: [u8; 16],
    current: u32,
    exceeded: u32,
}

/// Sources tracked for connection limits.
const LIMIT_SLOTS: usize = 4096;

/// A connection counted against a limit, to uncount when it ends.
#[derive(Clone, Copy, Default)]
pub(crate) struct LimitRef {
    pub(crate) generation: u64,
    pub(crate) slot: u32,
}

/// Everything the packet path keeps.
#[pin_data(PinnedDrop)]
pub(crate) struct PacketState {
    #[pin]
    pending: SpinLockIrq<Pending>,
    /// Writes the waiting record when no repeat came in time.
    #[pin]
    timer: Opaque<timer_list>,
    /// The published rules; never null.
    rules: Atomic<*const ActiveRules>,
    #[pin]
    limits: SpinLockIrq<KVVec<LimitSlot>>,
    repeated: Atomic<u64>,
}

// SAFETY: The timer is only touched through the timer API, which synchronises itself; the rules
// pointer only through atomics, with RCU keeping what it points to alive for readers; everything
// else is behind spinlocks or atomic.
unsafe impl Send for PacketState {}
// SAFETY: As above.
unsafe impl Sync for PacketState {}

impl PacketState {
    pub(crate) fn new() -> Result<impl PinInit<Self, Error>> {
        let pending = Pending {
            waiting: false,
            held: PacketRec::new()?,
            next: PacketRec::new()?,
        };
        let limits = KVVec::from_elem(LimitSlot::default(), LIMIT_SLOTS, GFP_KERNEL)?;
        let rules = KBox::into_raw(ActiveRules::new(RuleSet::default(), 0)?);
        Ok(try_pin_init!(PacketState {
            pending <- new_spinlock_irq!(pending, "tcplog_pending"),
            // SAFETY: `slot` is valid for the timer to be set up in; it is pinned and the timer
            // is deleted in `PinnedDrop` before the memory goes.
            timer <- Opaque::ffi_init(|slot| unsafe {
                bindings::tcplog_timer_setup(slot, Some(pending_timer))
            }),
            rules: Atomic::new(rules.cast_const()),
            limits <- new_spinlock_irq!(limits, "tcplog_limits"),
            repeated: Atomic::new(0),
        }))
    }

    pub(crate) fn repeated(&self) -> u64 {
        self.repeated.load(Relaxed)
    }

    /// Runs `f` on the published rules.
    fn with_rules<R>(&self, f: impl FnOnce(&ActiveRules) -> R) -> R {
        let _rcu = kernel::sync::rcu::read_lock();
        // SAFETY: `rules` is never null; a set is freed only after it was unpublished and an RCU
        // grace period passed, and this read happens inside an RCU read-side critical section.
        f(unsafe { &*self.rules.load(Acquire) })
    }

    pub(crate) fn rules(&self) -> RuleSet {
        self.with_rules(|r| r.set)
    }

    pub(crate) fn rule_stats(&self) -> RuleStats {
        self.with_rules(|r| RuleStats {
            packets: core::array::from_fn(|i| r.packets[i].load(Relaxed)),
            bytes: core::array::from_fn(|i| r.bytes[i].load(Relaxed)),
        })
    }

    /// Publishes a new rule set. Callers serialise (the configuration lock); this sleeps.
    pub(crate) fn set_rules(&self, set: &RuleSet) -> Result {
        if !set.is_valid() {
            return Err(EINVAL);
        }
        let generation = self.with_rules(|r| r.generation) + 1;
        let new = KBox::into_raw(ActiveRules::new(*set, generation)?);
        let old = self.rules.xchg(new.cast_const(), Full);
        kernel::sync::rcu::synchronize_rcu();
        // SAFETY: `old` came from `KBox::into_raw` and is unpublished; after the grace period no
        // reader holds it.
        drop(unsafe { KBox::from_raw(old.cast_mut()) });
        // Limits count against the rules of one generation: start afresh.
        self.limits
            .lock()
            .iter_mut()
            .for_each(|s| *s = LimitSlot::default());
        Ok(())
    }

    /// Writes the waiting record now, if any.
    pub(crate) fn flush_pending(&self, log: &Log) {
        let mut p = self.pending.lock();
        if core::mem::take(&mut p.waiting) {
            emit(log, &p.held);
        }
    }

    /// Counts a passive connection against the first matching rule with a limit; writes a
    /// LIMIT record when the source goes over it. Returns what to uncount when it ends.
    pub(crate) fn limit_connect(
        &self,
        log: &Log,
        meta: &PacketMeta<'_>,
        netns: u32,
    ) -> Option<LimitRef> {
        let (rule, threshold, generation) = self.with_rules(|r| {
            let i = r.set.first_match(meta)?;
            let t = r.set.rules[i].conn_limit;
            (t != 0).then_some((i, t, r.generation))
        })?;
        let mut over = None;
        let slot = {
            let mut slots = self.limits.lock();
            let n = slots.len();
            let half =
                |k: usize| u64::from_ne_bytes(meta.saddr[k..k + 8].try_into().unwrap_or_default());
            let h = (crate::sockinfo::keyed_hash([half(0), half(8), u64::from(netns), rule as u64])
                % n as u64) as usize;
            let mut found = None;
            for k in 0..n {
                let i = (h + k) % n;
                let s = &mut slots[i];
                let mine = s.used
                    && s.generation == generation
                    && s.netns == netns
                    && usize::from(s.rule) == rule
                    && s.family == meta.family
                    && s.src == *meta.saddr;
                if !s.used || s.generation != generation {
                    *s = LimitSlot {
                        used: true,
                        generation,
                        netns,
                        rule: rule as u16,
                        family: meta.family,
                        src: *meta.saddr,
                        current: 0,
                        exceeded: 0,
                    };
                    found = Some(i);
                    break;
                }
                if mine {
                    found = Some(i);
                    break;
                }
            }
            let i = found?;
            let s = &mut slots[i];
            s.current += 1;
            if s.current > threshold {
                s.exceeded += 1;
                over = Some(LimitBody {
                    netns,
                    rule: rule as u16 + 1,
                    family: meta.family,
                    limit_type: abi::LIMIT_CONNS_PER_SOURCE,
                    threshold,
                    current: s.current,
                    exceeded: s.exceeded,
                    src: s.src,
                });
            }
            i
        };
        if let Some(b) = over {
            log.emit(abi::rtype::LIMIT, &[b.as_bytes()]);
        }
        Some(LimitRef {
            generation,
            slot: slot as u32,
        })
    }

    /// Forgets every count (logging was disabled: the connections are no longer tracked).
    pub(crate) fn clear_limits(&self) {
        self.limits
            .lock()
            .iter_mut()
            .for_each(|s| *s = LimitSlot::default());
    }

    /// Uncounts a connection that ended.
    pub(crate) fn limit_disconnect(&self, r: LimitRef) {
        let mut slots = self.limits.lock();
        if let Some(s) = slots.get_mut(r.slot as usize) {
            if s.used && s.generation == r.generation {
                s.current = s.current.saturating_sub(1);
            }
        }
    }
}

#[pinned_drop]
impl PinnedDrop for PacketState {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: The timer was set up in `new`; this waits for a running callback and keeps it
        // from being re-armed by a late one.
        unsafe { bindings::timer_delete_sync(self.timer.get()) };
        // SAFETY: Nothing reads the rules anymore (the hooks are gone before the log); the
        // pointer came from `KBox::into_raw`.
        drop(unsafe { KBox::from_raw(self.rules.load(Acquire).cast_mut()) });
    }
}

/// Writes a packet record.
fn emit(log: &Log, rec: &PacketRec) {
    log.emit_at(
        abi::rtype::PACKET,
        &[rec.body.as_bytes(), &rec.data[..rec.len]],
        rec.time_ns,
        rec.boot_ns,
    );
}

/// The timer: writes the waiting record.
///
/// # Safety
///
/// Called by the timer core with the timer of a live `PacketState`, itself the `packets` field of
/// a live `Log`.
unsafe extern "C" fn pending_timer(t: *mut timer_list) {
    // SAFETY: The timer is the `timer` field of a `PacketState` (`Opaque<T>` is laid out as `T`),
    // which is the `packets` field of a `Log`; both live until the timer is deleted.
    let log = unsafe {
        let state = kernel::container_of!(t.cast::<Opaque<timer_list>>(), PacketState, timer);
        &*kernel::container_of!(state, Log, packets)
    };
    log.packets().flush_pending(log);
}

fn now_real() -> u64 {
    // SAFETY: No preconditions; callable from any context.
    unsafe { kernel::bindings::ktime_get_real_fast_ns() }
}

fn now_boot() -> u64 {
    // SAFETY: As above.
    unsafe { kernel::bindings::ktime_get_boot_fast_ns() }
}

/// Checks a packet against the rules; counts it for the first that matches, and logs it if that
/// rule says so.
///
/// # Safety
///
/// `skb` must be a valid packet at a netfilter hook; `dev` null or a live device.
pub(crate) unsafe fn apply_rules(
    log: &Log,
    skb: *const sk_buff,
    p: &Parsed,
    dir: u8,
    hook: u8,
    dev: *const net_device,
    netns: u32,
) {
    let state = log.packets();
    let mut ifname = [0u8; 16];
    let mut ifindex = 0;
    if !dev.is_null() {
        // SAFETY: `dev` is live for the call; its name is a NUL-terminated array.
        unsafe {
            for (d, s) in ifname.iter_mut().zip((*dev).name.iter()) {
                *d = *s as u8;
            }
            ifindex = (*dev).ifindex as u32;
        }
        ifname[15] = 0;
    }
    let meta = PacketMeta {
        family: p.family,
        protocol: p.protocol,
        direction: dir,
        saddr: &p.saddr,
        daddr: &p.daddr,
        sport: p.sport,
        dport: p.dport,
        tcp_flags: p.tcp_flags,
        ifname: &ifname,
    };
    let decision = state.with_rules(|r| {
        if r.set.n_rules == 0 {
            return None;
        }
        let i = r.set.first_match(&meta)?;
        r.packets[i].add(1, Relaxed);
        r.bytes[i].add(u64::from(p.skb_len), Relaxed);
        Some((i, r.set.rules[i].action))
    });
    let Some((rule, act)) = decision else { return };
    if act == action::COUNT {
        return;
    }
    let snap = log.config().snap_len as usize;
    let mut pending = state.pending.lock();
    let pend = &mut *pending;
    let rec = &mut pend.next;
    let now = now_real();
    rec.time_ns = now;
    rec.boot_ns = now_boot();
    rec.body = PacketBody {
        netns,
        ifindex,
        ifname,
        orig_len: p.orig_len,
        count: 1,
        rule: rule as u16 + 1,
        hook,
        direction: dir,
        family: p.family,
        protocol: p.protocol,
        tcp_flags: p.tcp_flags,
        flags: if act == action::LOG_BODY { PKF_BODY } else { 0 },
        last_ns: now,
        ..PacketBody::default()
    };
    rec.len = 0;
    if p.ip_hlen > MAX_IP_HEADER {
        rec.body.flags |= PKF_NO_HEADER;
    } else {
        let skb_len = p.skb_len as usize;
        let headers = p.ip_hlen + p.l4_hlen;
        let payload = if act == action::LOG_BODY {
            let avail = skb_len.saturating_sub(headers);
            if avail > snap {
                rec.body.flags |= PKF_TRUNCATED;
            }
            avail.min(snap)
        } else {
            0
        };
        let total = (headers + payload).min(MAX_DATA);
        // SAFETY: `skb` is valid; `data` holds `MAX_DATA` bytes.
        if unsafe { copy(skb, 0, &mut rec.data[..total]) } {
            rec.len = total;
            rec.body.ip_hlen = p.ip_hlen as u16;
            rec.body.l4_hlen = p.l4_hlen as u16;
            rec.body.payload_len = (total - headers) as u16;
        } else {
            rec.body.flags |= PKF_NO_HEADER;
        }
    }
    if pend.waiting && pend.held.same_as(&pend.next) {
        pend.held.body.count += 1;
        pend.held.body.last_ns = now;
        state.repeated.add(1, Relaxed);
        return;
    }
    if pend.waiting {
        emit(log, &pend.held);
    }
    core::mem::swap(&mut pend.held, &mut pend.next);
    pend.waiting = true;
    drop(pending);
    // SAFETY: The timer was set up in `PacketState::new` and lives as long as `state`.
    unsafe { bindings::tcplog_timer_arm(state.timer.get(), REPEAT_WINDOW_MS) };
}

/// A packet-shaped description of an accepted connection, for connection limits.
pub(crate) fn inbound_syn<'a>(
    family: u16,
    src: &'a [u8; 16],
    dst: &'a [u8; 16],
    sport: u16,
    dport: u16,
    noif: &'a [u8; 16],
) -> PacketMeta<'a> {
    PacketMeta {
        family,
        protocol: abi::IPPROTO_TCP,
        direction: direction::IN,
        saddr: src,
        daddr: dst,
        sport,
        dport,
        tcp_flags: tcp_flag::SYN,
        ifname: noif,
    }
}
