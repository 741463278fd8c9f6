# Throughput and p99 latency by client connections, one line per target (bench/harness/report.py
# writes one data file per target: conns req/s p99_ms).
#   gnuplot -e "files='a.dat b.dat'; titles='a b'; out='scaling.svg'; plot_title='...'" scaling.gp
set terminal svg size 1100,480 dynamic font 'Helvetica,12' background '#ffffff'
set output out
set multiplot layout 1,2 title plot_title noenhanced
set grid
set key top left noenhanced
set logscale x 2
set xrange [0.8:1400]
set xlabel 'client connections (wrk -t1, GET 5 B)'
set ylabel 'requests/s (median)'
set yrange [0:*]
set format y '%.0f'
plot for [i=1:words(files)] word(files, i) using 1:2 with linespoints lw 2 title word(titles, i)
set logscale y
set yrange [*:*]
set format y '%g'
set ylabel 'p99 latency, ms (median, log scale)'
plot for [i=1:words(files)] word(files, i) using 1:3 with linespoints lw 2 title word(titles, i)
unset multiplot
