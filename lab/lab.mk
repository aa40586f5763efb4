# lab/lab.mk: prerequisites of the rehearsal lab (package lab, `etcd-rescue lab`).
# Included by the top-level Makefile (include lab/lab.mk).  Targets:
#
#   lab-deps     apt packages the lab needs (only what is missing; root)
#   etcd-bins    etcd, etcdctl, etcdutl for each of $(ETCD_VERSIONS) -> lab/bin/<version>/
#   lab-rootfs   the nspawn hosts' Debian rootfs, debootstrapped into $(LAB_ROOTFS) once
#                (again when LAB_ROOTFS_PACKAGES changes)
#   kube-bins    kubelet, kube-apiserver ($(KUBE_VERSION)) and crictl ($(CRICTL_VERSION)) -> lab/bin/k8s/<version>/,
#                and the static-pod lab's images (etcd of each version, kube-apiserver, pause) -> lab/bin/images/
#   s3-bins      SeaweedFS's weed ($(SEAWEEDFS_VERSION)) for `lab up --s3` -> lab/bin/seaweedfs/<version>/weed
#                (and the link lab/bin/seaweedfs/weed to it)
#   lab-prereqs  all five
#   lab-test     go test ./lab/... (real processes; root)
#   lab-clean    remove lab/bin;  lab-purge: also the rootfs

ETCD_VERSIONS ?= v3.5.35 v3.6.16 v3.7.3
GO ?= go
LAB_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
LAB_BIN := $(LAB_DIR)/bin
LAB_ROOTFS ?= /var/cache/etcd-rescue-lab/rootfs
DEBIAN_MIRROR ?= http://deb.debian.org/debian
# keep in sync with RootfsPackages in lab/nspawn.go (TestMakefileInSync checks it)
LAB_ROOTFS_PACKAGES := systemd,systemd-sysv,dbus,openssh-server,iproute2,procps,sudo,openssl
# gcc and libc6-dev: the race detector of `make test` needs cgo
LAB_APT_PACKAGES := openssh-server openssh-client systemd-container debootstrap iproute2 util-linux socat ca-certificates sudo openssl procps gcc libc6-dev containerd runc
LAB_TEST_TIMEOUT ?= 20m
# the static-pod layout (keep in sync with KubeVersion, CrictlVersion and the
# image names in lab/kube.go; TestMakefileInSync checks it)
KUBE_VERSION ?= v1.35.4
CRICTL_VERSION ?= v1.34.0
PAUSE_IMAGE := registry.k8s.io/pause:3.10.1
KUBE_BIN := $(LAB_BIN)/k8s/$(KUBE_VERSION)
KUBE_IMAGES := $(LAB_BIN)/images
KUBE_TOOLS := $(LAB_BIN)/kubetools
# the S3-compatible store of `lab up --s3`: SeaweedFS built from its Go module
# (lab/s3build pins the commit; keep SEAWEEDFS_VERSION in sync with
# SeaweedFSVersion in lab/s3.go: TestMakefileS3InSync checks it)
SEAWEEDFS_VERSION ?= 4.53
SEAWEEDFS_COMMIT := 7506e5f91cd6
S3_BIN := $(LAB_BIN)/seaweedfs/$(SEAWEEDFS_VERSION)
# what the top-level Makefile's targets depend on: everything but the
# Kubernetes and SeaweedFS builds (LAB_PREREQS_BASE; `make test` builds those
# in the background while the other lab tests run), or everything (LAB_PREREQS)
LAB_PREREQS_BASE := lab-deps etcd-bins lab-rootfs
LAB_PREREQS := lab-prereqs

.PHONY: lab-deps etcd-bins kube-bins s3-bins lab-rootfs lab-prereqs lab-test lab-clean lab-purge

# apt-get only when something is missing.  While apt installs, /usr/sbin/policy-rc.d
# must exit 101: without systemd as PID 1 openssh-server's postinst would
# otherwise start an sshd on this machine's own port 22.  An existing
# policy-rc.d that does not exit 101 is put back afterwards.
lab-deps:
	@set -e; \
	if [ "$$(id -u)" != 0 ]; then echo "lab-deps: must run as root (apt-get)" >&2; exit 1; fi; \
	missing=""; \
	for p in $(LAB_APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "lab-deps: all installed ($(LAB_APT_PACKAGES))"; exit 0; fi; \
	echo "lab-deps: installing$$missing"; \
	restore=""; \
	if [ -e /usr/sbin/policy-rc.d ]; then \
	  rc=0; /usr/sbin/policy-rc.d ssh start >/dev/null 2>&1 || rc=$$?; \
	  if [ "$$rc" != 101 ]; then mv /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.etcd-rescue-lab; restore=move; fi; \
	else restore=remove; fi; \
	if [ -n "$$restore" ]; then \
	  printf '#!/bin/sh\n# etcd-rescue lab-deps: no service starts from package scripts\nexit 101\n' >/usr/sbin/policy-rc.d; \
	  chmod 755 /usr/sbin/policy-rc.d; \
	fi; \
	status=0; \
	{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; } || status=$$?; \
	case "$$restore" in \
	  move) mv -f /usr/sbin/policy-rc.d.etcd-rescue-lab /usr/sbin/policy-rc.d ;; \
	  remove) rm -f /usr/sbin/policy-rc.d ;; \
	esac; \
	exit $$status

etcd_minor = $(word 1,$(subst ., ,$(1))).$(word 2,$(subst ., ,$(1)))

# One rule per version: lab/bin/<v>/etcd from lab/etcdbuild/v3.X (which must pin <v>).
# Rebuilt only when that module's go.mod, go.sum or wrapper mains change.
define etcd_bin_rule
$(LAB_BIN)/$(1)/etcd: $(wildcard $(LAB_DIR)/etcdbuild/$(call etcd_minor,$(1))/go.mod $(LAB_DIR)/etcdbuild/$(call etcd_minor,$(1))/go.sum $(LAB_DIR)/etcdbuild/$(call etcd_minor,$(1))/*/*.go)
	@test -f $(LAB_DIR)/etcdbuild/$(call etcd_minor,$(1))/go.mod || { echo "etcd-bins: no build module lab/etcdbuild/$(call etcd_minor,$(1)) for $(1)" >&2; exit 1; }
	@grep -Eq '^\s*go\.etcd\.io/etcd/server/v3 $(1)\s*$$$$' $(LAB_DIR)/etcdbuild/$(call etcd_minor,$(1))/go.mod || { echo "etcd-bins: lab/etcdbuild/$(call etcd_minor,$(1))/go.mod does not pin $(1); change its require lines (and go mod tidy there)" >&2; exit 1; }
	@echo "etcd-bins: building $(1) (about 1-2 min with a cold Go cache)"
	cd $(LAB_DIR)/etcdbuild/$(call etcd_minor,$(1)) && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false \
	  $(GO) build -trimpath -ldflags '-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=modproxy' \
	  -o $(abspath $(LAB_BIN)/$(1))/ ./etcd ./etcdctl ./etcdutl
	@$(LAB_BIN)/$(1)/etcd --version | head -1
	@touch $(LAB_BIN)/$(1)/etcd
endef
$(foreach v,$(ETCD_VERSIONS),$(eval $(call etcd_bin_rule,$(v))))

etcd-bins: $(foreach v,$(ETCD_VERSIONS),$(LAB_BIN)/$(v)/etcd)

# The marker .etcd-rescue-lab-rootfs holds "bookworm minbase <packages>": a
# rootfs made with another package list (an older checkout's, without sudo...)
# is debootstrapped again, unless a lab that is up uses it.  The lock is the
# one `etcd-rescue lab up` takes when it makes a missing rootfs itself.
LAB_ROOTFS_STAMP := bookworm minbase $(LAB_ROOTFS_PACKAGES)

lab-rootfs:
	@set -e; m=$(LAB_ROOTFS)/.etcd-rescue-lab-rootfs; \
	if [ "$$(cat $$m 2>/dev/null)" = "$(LAB_ROOTFS_STAMP)" ]; then echo "lab-rootfs: $(LAB_ROOTFS) is ready ($(LAB_ROOTFS_PACKAGES))"; exit 0; fi; \
	command -v debootstrap >/dev/null || { echo "lab-rootfs: debootstrap missing (make lab-deps)" >&2; exit 1; }; \
	mkdir -p $(dir $(LAB_ROOTFS)); exec 9>$(LAB_ROOTFS).lock; flock 9; \
	if [ "$$(cat $$m 2>/dev/null)" = "$(LAB_ROOTFS_STAMP)" ]; then echo "lab-rootfs: $(LAB_ROOTFS) is ready ($(LAB_ROOTFS_PACKAGES))"; exit 0; fi; \
	if [ -e $$m ]; then \
	  if grep -qF -e ":$(LAB_ROOTFS)," -e "=$(LAB_ROOTFS)," /proc/self/mounts; then \
	    echo "lab-rootfs: $(LAB_ROOTFS) was made with \"$$(cat $$m)\", not \"$(LAB_ROOTFS_STAMP)\", and a lab that is up uses it: etcd-rescue lab down first" >&2; exit 1; \
	  fi; \
	  echo "lab-rootfs: $(LAB_ROOTFS) was made with \"$$(cat $$m)\"; building it again with $(LAB_ROOTFS_PACKAGES)"; \
	fi; \
	echo "lab-rootfs: debootstrap bookworm into $(LAB_ROOTFS) (once, about 70 s)"; \
	rm -rf $(LAB_ROOTFS).tmp; \
	debootstrap --variant=minbase --include=$(LAB_ROOTFS_PACKAGES) bookworm $(LAB_ROOTFS).tmp $(DEBIAN_MIRROR) \
	  >$(LAB_ROOTFS).log 2>&1 || { tail -20 $(LAB_ROOTFS).log >&2; exit 1; }; \
	echo "$(LAB_ROOTFS_STAMP)" >$(LAB_ROOTFS).tmp/.etcd-rescue-lab-rootfs; \
	rm -rf $(LAB_ROOTFS) && mv $(LAB_ROOTFS).tmp $(LAB_ROOTFS); \
	echo "lab-rootfs: ready ($$(du -sh $(LAB_ROOTFS) | cut -f1))"

# kubelet and kube-apiserver from the k8s.io/kubernetes module (lab/kubebuild/<minor>
# pins KUBE_VERSION and the staging modules), crictl from sigs.k8s.io/cri-tools
# (lab/kubebuild/crictl), pause and mkimage from lab/kubebuild/images.  Rebuilt
# only when those modules change; the Go build cache makes a rebuild cheap.
KUBE_MINOR = $(word 1,$(subst ., ,$(KUBE_VERSION))).$(word 2,$(subst ., ,$(KUBE_VERSION)))
KUBE_BUILD_FLAGS := CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

$(KUBE_BIN)/kubelet: $(wildcard $(LAB_DIR)/kubebuild/$(KUBE_MINOR)/go.mod $(LAB_DIR)/kubebuild/$(KUBE_MINOR)/go.sum $(LAB_DIR)/kubebuild/$(KUBE_MINOR)/*/*.go)
	@test -f $(LAB_DIR)/kubebuild/$(KUBE_MINOR)/go.mod || { echo "kube-bins: no build module lab/kubebuild/$(KUBE_MINOR) for $(KUBE_VERSION)" >&2; exit 1; }
	@grep -Eq '^\s*k8s\.io/kubernetes $(KUBE_VERSION)\s*$$' $(LAB_DIR)/kubebuild/$(KUBE_MINOR)/go.mod || { echo "kube-bins: lab/kubebuild/$(KUBE_MINOR)/go.mod does not pin k8s.io/kubernetes $(KUBE_VERSION)" >&2; exit 1; }
	@echo "kube-bins: building kubelet and kube-apiserver $(KUBE_VERSION) (about 6-10 min with a cold Go cache on 2 cores)"
	cd $(LAB_DIR)/kubebuild/$(KUBE_MINOR) && $(KUBE_BUILD_FLAGS) $(GO) build -trimpath \
	  -ldflags '-s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION)))' \
	  -o $(abspath $(KUBE_BIN))/ ./kubelet ./kube-apiserver
	@$(KUBE_BIN)/kubelet --version
	@touch $(KUBE_BIN)/kubelet

$(KUBE_BIN)/crictl: $(wildcard $(LAB_DIR)/kubebuild/crictl/go.mod $(LAB_DIR)/kubebuild/crictl/go.sum)
	@echo "kube-bins: building crictl $(CRICTL_VERSION)"
	cd $(LAB_DIR)/kubebuild/crictl && $(KUBE_BUILD_FLAGS) $(GO) build -trimpath \
	  -ldflags '-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$(CRICTL_VERSION)' \
	  -o $(abspath $(KUBE_BIN))/crictl sigs.k8s.io/cri-tools/cmd/crictl
	@touch $(KUBE_BIN)/crictl

$(KUBE_TOOLS)/mkimage: $(wildcard $(LAB_DIR)/kubebuild/images/go.mod $(LAB_DIR)/kubebuild/images/go.sum $(LAB_DIR)/kubebuild/images/*/*.go)
	cd $(LAB_DIR)/kubebuild/images && $(KUBE_BUILD_FLAGS) $(GO) build -trimpath -ldflags '-s -w' -o $(abspath $(KUBE_TOOLS))/ ./mkimage ./pause
	@touch $(KUBE_TOOLS)/mkimage

# One image per etcd version (registry.k8s.io/etcd:<v>-0 as kubeadm names it),
# kube-apiserver and pause: docker-archive tarballs that `ctr images import` reads.
define etcd_image_rule
$(KUBE_IMAGES)/etcd-$(patsubst v%,%,$(1)).tar: $(LAB_BIN)/$(1)/etcd $(KUBE_TOOLS)/mkimage
	@mkdir -p $(KUBE_IMAGES)
	$(KUBE_TOOLS)/mkimage -o $$@ -tag registry.k8s.io/etcd:$(patsubst v%,%,$(1))-0 -entrypoint /usr/local/bin/etcd \
	  $(LAB_BIN)/$(1)/etcd=/usr/local/bin/etcd $(LAB_BIN)/$(1)/etcdctl=/usr/local/bin/etcdctl $(LAB_BIN)/$(1)/etcdutl=/usr/local/bin/etcdutl
endef
$(foreach v,$(ETCD_VERSIONS),$(eval $(call etcd_image_rule,$(v))))

$(KUBE_IMAGES)/kube-apiserver-$(KUBE_VERSION).tar: $(KUBE_BIN)/kubelet $(KUBE_TOOLS)/mkimage
	@mkdir -p $(KUBE_IMAGES)
	$(KUBE_TOOLS)/mkimage -o $@ -tag registry.k8s.io/kube-apiserver:$(KUBE_VERSION) -entrypoint /usr/local/bin/kube-apiserver \
	  $(KUBE_BIN)/kube-apiserver=/usr/local/bin/kube-apiserver

$(KUBE_IMAGES)/pause.tar: $(KUBE_TOOLS)/mkimage
	@mkdir -p $(KUBE_IMAGES)
	$(KUBE_TOOLS)/mkimage -o $@ -tag $(PAUSE_IMAGE) -entrypoint /pause $(KUBE_TOOLS)/pause=/pause

kube-bins: $(KUBE_BIN)/kubelet $(KUBE_BIN)/crictl $(KUBE_IMAGES)/pause.tar $(KUBE_IMAGES)/kube-apiserver-$(KUBE_VERSION).tar \
	$(foreach v,$(ETCD_VERSIONS),$(KUBE_IMAGES)/etcd-$(patsubst v%,%,$(v)).tar)

# weed from github.com/seaweedfs/seaweedfs/weed at the commit lab/s3build
# pins; rebuilt only when that module changes.  The link
# lab/bin/seaweedfs/weed is what tests outside the lab package run.
$(S3_BIN)/weed: $(wildcard $(LAB_DIR)/s3build/go.mod $(LAB_DIR)/s3build/go.sum $(LAB_DIR)/s3build/*/*.go)
	@grep -Eq '^\s*(require\s+)?github\.com/seaweedfs/seaweedfs v0\.0\.0-[0-9]{14}-$(SEAWEEDFS_COMMIT)\s*$$' $(LAB_DIR)/s3build/go.mod || { echo "s3-bins: lab/s3build/go.mod does not pin SeaweedFS commit $(SEAWEEDFS_COMMIT)" >&2; exit 1; }
	@echo "s3-bins: building SeaweedFS $(SEAWEEDFS_VERSION) (about 17 min of CPU with a cold Go cache: 21 min wall at nice 19 on a busy 2-core machine)"
	cd $(LAB_DIR)/s3build && $(KUBE_BUILD_FLAGS) $(GO) build -trimpath \
	  -ldflags '-s -w -X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT=$(SEAWEEDFS_COMMIT)' \
	  -o $(abspath $(S3_BIN))/weed github.com/seaweedfs/seaweedfs/weed
	@$(S3_BIN)/weed version | grep -F ' $(SEAWEEDFS_VERSION) ' || { echo "s3-bins: weed is not version $(SEAWEEDFS_VERSION) (SEAWEEDFS_VERSION and lab/s3build disagree)" >&2; exit 1; }
	@touch $(S3_BIN)/weed

s3-bins: $(S3_BIN)/weed
	@ln -sfn $(SEAWEEDFS_VERSION)/weed $(LAB_BIN)/seaweedfs/weed

lab-prereqs: $(LAB_PREREQS_BASE) kube-bins s3-bins

lab-test: lab-prereqs
	$(GO) test -count=1 -timeout $(LAB_TEST_TIMEOUT) ./lab/...

lab-clean:
	rm -rf $(LAB_BIN)

lab-purge: lab-clean
	rm -rf $(LAB_ROOTFS) $(LAB_ROOTFS).tmp $(LAB_ROOTFS).log $(LAB_ROOTFS).lock
