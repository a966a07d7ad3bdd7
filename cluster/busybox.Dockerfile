# The workload image for pods: a static busybox with a link per applet (sh, httpd, nslookup,
# wget, nc, sleep, cat, ...), from the root filesystem cluster/build.sh assembles.
FROM scratch
COPY . /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
WORKDIR /
CMD ["/bin/sh"]
