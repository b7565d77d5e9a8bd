//! The IPFIX protocol's numbers (RFC 7011) and the information elements tcplog exports: IANA's
//! (the IPFIX Information Elements registry), their reverse forms for biflows (RFC 5103), and
//! tcplog's enterprise-specific ones, which it also describes in-band (RFC 5610).

/// The version field of every IPFIX message.
pub const VERSION: u16 = 10;
/// Length of the message header: version, length, export time, sequence number, domain.
pub const MESSAGE_HEADER_LEN: usize = 16;
/// Length of a set header: set id, length.
pub const SET_HEADER_LEN: usize = 4;
/// Set id of a Template Set.
pub const SET_TEMPLATE: u16 = 2;
/// Set id of an Options Template Set.
pub const SET_OPTIONS_TEMPLATE: u16 = 3;
/// The smallest template id; data sets carry their template's id.
pub const FIRST_TEMPLATE_ID: u16 = 256;
/// A field length that says "variable length" (RFC 7011 section 7).
pub const VARLEN: u16 = 0xFFFF;
/// The enterprise bit of a field specifier's element id.
pub const ENTERPRISE_BIT: u16 = 0x8000;

/// RFC 5103's Reverse Information Element Private Enterprise Number: an IANA element with this
/// enterprise number is the same element for the reverse direction of a biflow.
pub const PEN_REVERSE: u32 = 29305;
/// RFC 5103 section 6.2: the reverse of an enterprise-specific element is the same number with
/// this bit set, in the same enterprise.
pub const REVERSE_BIT: u16 = 0x4000;

/// The Private Enterprise Number of tcplog's own elements: 32473, the number RFC 5612 reserves
/// for documentation and examples. A placeholder: a deployment that keeps these records should
/// replace it by a number registered with IANA (`--enterprise`).
pub const PEN_DOCUMENTATION: u32 = 32473;

/// One field of a template: an element, its length in records, and its enterprise (0: IANA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub id: u16,
    pub len: u16,
    pub pen: u32,
}

/// IANA's element ids (the IPFIX Information Elements registry).
pub mod iana {
    pub const OCTET_DELTA_COUNT: u16 = 1;
    pub const PACKET_DELTA_COUNT: u16 = 2;
    pub const PROTOCOL_IDENTIFIER: u16 = 4;
    pub const TCP_CONTROL_BITS: u16 = 6;
    pub const SOURCE_TRANSPORT_PORT: u16 = 7;
    pub const SOURCE_IPV4_ADDRESS: u16 = 8;
    pub const DESTINATION_TRANSPORT_PORT: u16 = 11;
    pub const DESTINATION_IPV4_ADDRESS: u16 = 12;
    pub const SOURCE_IPV6_ADDRESS: u16 = 27;
    pub const DESTINATION_IPV6_ADDRESS: u16 = 28;
    pub const FLOW_DIRECTION: u16 = 61;
    pub const OCTET_TOTAL_COUNT: u16 = 85;
    pub const PACKET_TOTAL_COUNT: u16 = 86;
    pub const FLOW_END_REASON: u16 = 136;
    pub const FLOW_ID: u16 = 148;
    pub const FLOW_START_MILLISECONDS: u16 = 152;
    pub const FLOW_END_MILLISECONDS: u16 = 153;
    pub const FLOW_START_NANOSECONDS: u16 = 156;
    pub const FLOW_END_NANOSECONDS: u16 = 157;
    pub const BIFLOW_DIRECTION: u16 = 239;
    pub const INFORMATION_ELEMENT_ID: u16 = 303;
    pub const INFORMATION_ELEMENT_DATA_TYPE: u16 = 339;
    pub const INFORMATION_ELEMENT_DESCRIPTION: u16 = 340;
    pub const INFORMATION_ELEMENT_NAME: u16 = 341;
    pub const INFORMATION_ELEMENT_RANGE_BEGIN: u16 = 342;
    pub const INFORMATION_ELEMENT_RANGE_END: u16 = 343;
    pub const INFORMATION_ELEMENT_SEMANTICS: u16 = 344;
    pub const INFORMATION_ELEMENT_UNITS: u16 = 345;
    pub const PRIVATE_ENTERPRISE_NUMBER: u16 = 346;
}

/// `flowEndReason` values.
pub mod end_reason {
    pub const IDLE_TIMEOUT: u8 = 1;
    pub const ACTIVE_TIMEOUT: u8 = 2;
    pub const END_OF_FLOW: u8 = 3;
}

/// `biflowDirection` values (RFC 5103 section 5).
pub mod biflow {
    /// The source is an arbitrary end: who opened the connection is not known.
    pub const ARBITRARY: u8 = 0;
    /// The source is the initiator: the end that sent the first SYN.
    pub const INITIATOR: u8 = 1;
}

/// `flowDirection` values: whether the forward direction enters or leaves the observation point
/// (this host).
pub mod direction {
    pub const INGRESS: u8 = 0;
    pub const EGRESS: u8 = 1;
}

/// `tcpControlBits` bits.
pub mod tcp {
    pub const FIN: u16 = 0x01;
    pub const SYN: u16 = 0x02;
    pub const RST: u16 = 0x04;
    pub const ACK: u16 = 0x10;
}

/// tcplog's enterprise-specific element ids (under `PEN_DOCUMENTATION` or `--enterprise`).
pub mod tcplog {
    /// Data bytes, each byte once (retransmissions not counted), over the connection's life.
    /// Reversible.
    pub const DATA_OCTET_TOTAL_COUNT: u16 = 1;
    /// Data bytes over an interim record's interval. Reversible.
    pub const DATA_OCTET_DELTA_COUNT: u16 = 2;
    /// TCP segments over the connection's life (the kernel's count). Reversible.
    pub const SEGMENT_TOTAL_COUNT: u16 = 3;
    /// Segments this host retransmitted.
    pub const RETRANSMITTED_SEGMENT_TOTAL_COUNT: u16 = 4;
    /// This host's smoothed round-trip time, microseconds.
    pub const SMOOTHED_RTT_MICROSECONDS: u16 = 5;
    /// The owner's process id (0: unknown).
    pub const PROCESS_ID: u16 = 6;
    /// The owner's real user id (4294967295: unknown).
    pub const USER_ID: u16 = 7;
    /// The owner's command name.
    pub const COMMAND: u16 = 8;
    /// The network namespace's inode number.
    pub const NETWORK_NAMESPACE: u16 = 9;
    /// The owner's cgroup (v2) id.
    pub const CGROUP_ID: u16 = 10;
    /// An MPTCP subflow's MPTCP connection (its flowId); 0 for others.
    pub const PARENT_FLOW_ID: u16 = 11;
    /// How the connection ended: tcplog's `close` (0 unknown, 1 fin, 2 rst_sent, 3
    /// rst_received, 4 timeout).
    pub const CLOSE_REASON: u16 = 12;
    /// The summary's flags (`SUMF_*` of tcplog's ABI: partial, owner unknown, ...).
    pub const RECORD_FLAGS: u16 = 13;
    /// An interim record's TCP state (1 established, ... as the kernel numbers them).
    pub const TCP_STATE: u16 = 14;
    /// The owner's parent process id.
    pub const PARENT_PROCESS_ID: u16 = 15;
}

/// IANA's abstract data types (RFC 5610's informationElementDataType).
pub mod data_type {
    pub const UNSIGNED8: u8 = 1;
    pub const UNSIGNED16: u8 = 2;
    pub const UNSIGNED32: u8 = 3;
    pub const UNSIGNED64: u8 = 4;
    pub const STRING: u8 = 13;
}

/// IANA's element semantics (RFC 5610's informationElementSemantics).
pub mod semantics {
    pub const DEFAULT: u8 = 0;
    pub const QUANTITY: u8 = 1;
    pub const TOTAL_COUNTER: u8 = 2;
    pub const DELTA_COUNTER: u8 = 3;
    pub const IDENTIFIER: u8 = 4;
    pub const FLAGS: u8 = 5;
}

/// IANA's element units (RFC 5610's informationElementUnits).
pub mod units {
    pub const NONE: u16 = 0;
    pub const OCTETS: u16 = 2;
    pub const PACKETS: u16 = 3;
    pub const MICROSECONDS: u16 = 7;
}

/// What RFC 5610 says of one of tcplog's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElementType {
    pub id: u16,
    pub name: &'static str,
    pub data_type: u8,
    pub semantics: u8,
    pub units: u16,
    pub description: &'static str,
}

const fn et(
    id: u16,
    name: &'static str,
    data_type: u8,
    semantics: u8,
    units: u16,
    description: &'static str,
) -> ElementType {
    ElementType {
        id,
        name,
        data_type,
        semantics,
        units,
        description,
    }
}

/// tcplog's elements, forward and reverse, as RFC 5610 records describe them.
pub const ELEMENT_TYPES: [ElementType; 18] = {
    use data_type::*;
    use semantics::*;
    use tcplog::*;
    use units::*;
    const R: u16 = REVERSE_BIT;
    [
        et(
            DATA_OCTET_TOTAL_COUNT,
            "tcplogDataOctetTotalCount",
            UNSIGNED64,
            TOTAL_COUNTER,
            OCTETS,
            "TCP data bytes the source sent over the connection's life, each byte once",
        ),
        et(
            DATA_OCTET_TOTAL_COUNT | R,
            "reverseTcplogDataOctetTotalCount",
            UNSIGNED64,
            TOTAL_COUNTER,
            OCTETS,
            "TCP data bytes the destination sent over the connection's life, each byte once",
        ),
        et(
            DATA_OCTET_DELTA_COUNT,
            "tcplogDataOctetDeltaCount",
            UNSIGNED64,
            DELTA_COUNTER,
            OCTETS,
            "TCP data bytes the source sent since the previous report",
        ),
        et(
            DATA_OCTET_DELTA_COUNT | R,
            "reverseTcplogDataOctetDeltaCount",
            UNSIGNED64,
            DELTA_COUNTER,
            OCTETS,
            "TCP data bytes the destination sent since the previous report",
        ),
        et(
            SEGMENT_TOTAL_COUNT,
            "tcplogSegmentTotalCount",
            UNSIGNED32,
            TOTAL_COUNTER,
            PACKETS,
            "TCP segments the source sent, as the kernel counts them",
        ),
        et(
            SEGMENT_TOTAL_COUNT | R,
            "reverseTcplogSegmentTotalCount",
            UNSIGNED32,
            TOTAL_COUNTER,
            PACKETS,
            "TCP segments the destination sent, as the kernel counts them",
        ),
        et(
            RETRANSMITTED_SEGMENT_TOTAL_COUNT,
            "tcplogRetransmittedSegmentTotalCount",
            UNSIGNED32,
            TOTAL_COUNTER,
            PACKETS,
            "TCP segments the exporting host retransmitted",
        ),
        et(
            SMOOTHED_RTT_MICROSECONDS,
            "tcplogSmoothedRttMicroseconds",
            UNSIGNED32,
            QUANTITY,
            MICROSECONDS,
            "the exporting host's smoothed round-trip time",
        ),
        et(
            PROCESS_ID,
            "tcplogProcessId",
            UNSIGNED32,
            IDENTIFIER,
            NONE,
            "process id of the connection's owner on the exporting host (0: unknown)",
        ),
        et(
            USER_ID,
            "tcplogUserId",
            UNSIGNED32,
            IDENTIFIER,
            NONE,
            "real user id of the owner (4294967295: unknown)",
        ),
        et(
            COMMAND,
            "tcplogCommand",
            STRING,
            DEFAULT,
            NONE,
            "command name of the owner (empty: unknown)",
        ),
        et(
            NETWORK_NAMESPACE,
            "tcplogNetworkNamespace",
            UNSIGNED32,
            IDENTIFIER,
            NONE,
            "inode number of the connection's network namespace",
        ),
        et(
            CGROUP_ID,
            "tcplogCgroupId",
            UNSIGNED64,
            IDENTIFIER,
            NONE,
            "cgroup v2 id of the owner",
        ),
        et(
            PARENT_FLOW_ID,
            "tcplogParentFlowId",
            UNSIGNED64,
            IDENTIFIER,
            NONE,
            "flowId of the MPTCP connection an MPTCP subflow carries (0: none)",
        ),
        et(
            CLOSE_REASON,
            "tcplogCloseReason",
            UNSIGNED8,
            IDENTIFIER,
            NONE,
            "0 unknown, 1 fin, 2 reset sent, 3 reset received, 4 timeout",
        ),
        et(
            RECORD_FLAGS,
            "tcplogRecordFlags",
            UNSIGNED16,
            FLAGS,
            NONE,
            "tcplog's summary flags: 1 partial, 2 owner unknown, 4 start unknown, 8 IP counters",
        ),
        et(
            TCP_STATE,
            "tcplogTcpState",
            UNSIGNED8,
            IDENTIFIER,
            NONE,
            "TCP state when an interim record was taken (1 established)",
        ),
        et(
            PARENT_PROCESS_ID,
            "tcplogParentProcessId",
            UNSIGNED32,
            IDENTIFIER,
            NONE,
            "parent process id of the owner",
        ),
    ]
};

/// The scope and fields of the RFC 5610 Information Element Type options template, in order
/// (the elements libfixbuf and other collectors look for).
pub const ELEMENT_TYPE_FIELDS: [FieldSpec; 9] = {
    const fn f(id: u16, len: u16) -> FieldSpec {
        FieldSpec { id, len, pen: 0 }
    }
    use iana::*;
    [
        f(PRIVATE_ENTERPRISE_NUMBER, 4),
        f(INFORMATION_ELEMENT_ID, 2),
        f(INFORMATION_ELEMENT_DATA_TYPE, 1),
        f(INFORMATION_ELEMENT_SEMANTICS, 1),
        f(INFORMATION_ELEMENT_UNITS, 2),
        f(INFORMATION_ELEMENT_RANGE_BEGIN, 8),
        f(INFORMATION_ELEMENT_RANGE_END, 8),
        f(INFORMATION_ELEMENT_NAME, VARLEN),
        f(INFORMATION_ELEMENT_DESCRIPTION, VARLEN),
    ]
};
/// Of those, the scope fields (the first two).
pub const ELEMENT_TYPE_SCOPE: u16 = 2;
