# The failover scenario per second: p99 latency (left axis) and failed requests in percent
# (right axis), with the kill and the restore marked. bench/harness/failover.py writes the data
# file (second requests failed p99_ms) and calls:
#   gnuplot -e "data='failover.dat'; out='failover.svg'; plot_title='...'; kill_at=10; restore_at=20" failover.gp
set terminal svg size 900,480 dynamic font 'Helvetica,12' background '#ffffff'
set output out
set title plot_title noenhanced
set grid
set key top right noenhanced
set xlabel 'seconds into the run'
set ylabel 'p99 latency (ms)'
set y2label 'failed requests (%)'
set yrange [0:*]
set y2range [0:1<*]
set ytics nomirror
set y2tics
set arrow from kill_at, graph 0 to kill_at, graph 1 nohead dashtype 2 lc rgb '#c00000'
set arrow from restore_at, graph 0 to restore_at, graph 1 nohead dashtype 2 lc rgb '#008000'
set label 'killed' at kill_at, graph 0.95 offset 0.5,0 tc rgb '#c00000'
set label 'restored' at restore_at, graph 0.95 offset 0.5,0 tc rgb '#008000'
plot data using 1:4 with lines lw 2 title 'p99 (ms)' axes x1y1, \
     data using 1:($2 > 0 ? 100.0 * $3 / $2 : 0) with impulses lw 4 title 'failed (%)' axes x1y2
