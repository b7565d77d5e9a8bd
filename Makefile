# SPDX-License-Identifier: GPL-2.0
#
# tcplog: the kernel module tcplog.ko and the userspace tool `tcplog`.
#
#   make                      build the tool, and tcplog.ko for every Rust-enabled Debian kernel of
#                             the current backports and unstable (KERNELS="all"), inside the build
#                             roots that scripts/build-root.sh makes (needs root the first time):
#                             ./tcplog.ko for the stock kernel (backports/amd64), the others in
#                             target/kernels/KVER/tcplog.ko
#   make KERNELS="backports/cloud-amd64 unstable/amd64@7.2"
#                             those kernels only (SUITE/FLAVOUR[@SERIES][=VERSION], see
#                             scripts/build-root.sh; `stock` is backports/amd64)
#   make KDIR=/path/to/tree   build the module against that Rust-enabled kernel build tree with its
#                             own toolchain, and the tool with the host's cargo
#   make demo                 build, boot the VM, show the tool working (README's main command)
#   make check                every test: host, module, VM; ends with "N passed, N failed"
#   make deb                  the Debian packages tcplog and tcplog-modules-RELEASE for each of
#                             KERNELS, in target/deb/
#                             (KEY=... CERT=...: with the module signed by that key)
#   make sign KEY=k CERT=c    tcplog.ko signed with that key: target/signed/tcplog.ko
#   make clean
#
# kbuild reads Kbuild, not this file, when it builds the module (M=...).

KDIR ?=
KERNELS ?= all
CARGO ?= cargo

.PHONY: all module tool demo check deb sign clean

ifeq ($(KDIR),)
all:
	@mkdir -p target && ./scripts/build.sh --kernels "$(KERNELS)" >target/built && \
		sed -n 's|^MODULE=.*/kernel-\(.*\)\.env \(.*\)|tcplog.ko for \1: \2|p' target/built
else
all: module tool

module:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

tool:
	$(CARGO) build --release --locked -p tcplog
endif

demo:
	./scripts/demo.sh

check:
	./scripts/check.sh

deb:
	./scripts/deb.sh --kernels "$(KERNELS)" $(if $(KEY),--key $(KEY) --cert $(CERT))

sign: all
	@[ -n "$(KEY)" ] && [ -n "$(CERT)" ] || { echo "make sign needs KEY=private-key.pem CERT=certificate" >&2; exit 2; }
	./scripts/sign.sh $(KEY) $(CERT)

clean:
	rm -f *.o *.ko *.mod *.mod.c .*.cmd Module.symvers modules.order module/*.o module/.*.cmd \
		module/bindings_generated.rs
	rm -rf target qemu-test/out
