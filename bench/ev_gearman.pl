# The Perl module EV::Gearman as a benchmark peer for bench/vs.py (issue 17).
# Our own driver script: it only *uses* EV::Gearman, which is not part of this
# project (vs.py finds it, see ../shared/peers/README.md); nothing of the
# module is copied here. vs.py runs it with -I pointing at the module's blib.
#
#   perl ev_gearman.pl client HOST PORT FUNC BG_FUNC WORKLOAD N SIZE LIMIT
#       WORKLOAD is pipelined, sequential or background (vs.py's names). One
#       foreground round trip on FUNC first (connected and warm, as vs.py's
#       Python children), then the workload; prints
#       "RESULT <jobs/s> <cpu s/job> <peak RSS KiB>" (CPU: this process only,
#       see cpu(); peak RSS from /proc/self/status VmHWM).
#   perl ev_gearman.pl worker HOST PORT FUNC LIMIT
#       A sync echo worker on FUNC until SIGTERM or LIMIT seconds.
use strict; use warnings;
use Time::HiRes qw(time);
use EV; use EV::Gearman;

my $mode = shift @ARGV // '';
# CPU seconds of this process: /proc/self/schedstat counts nanoseconds on the
# CPU (times() counts 10 ms ticks: too coarse for a 1 us/job workload).
sub cpu {
    if (open my $f, '<', '/proc/self/schedstat') {
        my ($ns) = split ' ', scalar <$f>;
        return $ns / 1e9 if defined $ns;
    }
    my @t = times; $t[0] + $t[1];
}

if ($mode eq 'worker') {
    my ($host, $port, $func, $limit) = @ARGV;
    my $w = EV::Gearman->new(host => $host, port => $port);
    $w->register_function($func => sub { $_[0]->workload });
    $w->work;
    my $t = EV::timer $limit, 0, sub { EV::break };
    my $s = EV::signal 'TERM', sub { EV::break };
    EV::run;
    exit 0;
}
die "usage: ev_gearman.pl client|worker ...\n" unless $mode eq 'client';

my ($host, $port, $func, $bg_func, $workload, $n, $size, $limit) = @ARGV;
alarm($limit + 5);
my $g = EV::Gearman->new(host => $host, port => $port);
my $payload = 'x' x $size;
my ($left, $failed) = (0, 0);
my $guard = EV::timer $limit, 0, sub { EV::break };

sub done { my ($r, $err) = @_; $failed++ if defined $err; EV::break if --$left == 0 }

$left = 1; $g->submit_job($func, $payload, \&done); EV::run;   # connected and warm
die "warm-up failed\n" if $failed || $left;

my ($c0, $t0) = (cpu(), time);
if ($workload eq 'pipelined') {
    $left = $n;
    $g->submit_job($func, $payload, \&done) for 1 .. $n;
    EV::run;
} elsif ($workload eq 'sequential') {
    $left = $n;
    my $cb; $cb = sub { done(@_); $g->submit_job($func, $payload, $cb) if $left > 0 };
    $g->submit_job($func, $payload, $cb);
    EV::run;
} elsif ($workload eq 'background') {
    $left = $n;
    $g->submit_job_bg($bg_func, $payload, \&done) for 1 .. $n;
    EV::run;
} else {
    die "unknown workload $workload\n";
}
my ($dt, $dc) = (time - $t0, cpu() - $c0);
die "not finished: $left left\n" if $left;
die "$failed jobs failed\n" if $failed;
my $hwm = 0;
if (open my $st, '<', '/proc/self/status') {
    while (<$st>) { $hwm = $1 if /^VmHWM:\s+(\d+)/ }
}
printf "RESULT %.3f %.9f %d\n", $n / $dt, $dc / $n, $hwm;
