# Latency by percentile, HdrHistogram style: x is 1/(1-p) on a log axis, so each decade is one
# more nine (90%, 99%, 99.9% ...). bench/harness/report.py writes one data file per target:
# percentile 1/(1-p) latency_ms (oha, fixed rate, corrected for coordinated omission).
#   gnuplot -e "files='a.dat b.dat'; titles='a b'; out='latency.svg'; plot_title='...'" latency.gp
set terminal svg size 900,520 dynamic font 'Helvetica,12' background '#ffffff'
set output out
set title plot_title noenhanced
set grid
set key top left noenhanced
set logscale x 10
set xrange [1:100000]
set xtics ('0%%' 1, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000)
set xlabel 'percentile'
set ylabel 'latency (ms)'
set yrange [0:*]
plot for [i=1:words(files)] word(files, i) using 2:3 with lines lw 2 title word(titles, i)
