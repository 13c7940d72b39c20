# mpkernel MQTT bridge: umqtt.simple's API for a board without a network. Each call prints
# a frame (0x1D, a repr, '#', the sum of its bytes in hex, 0x1E) and reads the kernel's
# answer (same framing around a letter and hex, parsed without eval: the parser would need
# RAM the micro:bit does not have; sent in pieces of 48 bytes: '+' asks for the next piece, '!' for all
# of it again after a loss) from the serial link. So it works while a cell runs under
# mpkernel. Written tersely on purpose: a micro:bit (MicroPython 1.9, 16 KB RAM) must compile
# it in the ~7 KB it has free (there, the client part is a module of its own, compiled
# separately); comment lines are stripped before upload, and the kernel sends the reader part
# that fits the board (the micro:bit's UART, or stdin elsewhere).
# -- microbit --
from microbit import uart
_r=uart.read
import utime as _t
# -- stdin --
import sys,select
_p=select.poll();_p.register(sys.stdin,1)
def _r():
 if _p.poll(2):return sys.stdin.buffer.read(1)
try:
 import utime as _t
except ImportError:
 import time as _t
# -- core --
class MQTTException(Exception):pass
def _b(x):return x if x is None or isinstance(x,bytes) else bytes(str(x),'utf8')
def _h(h):return bytes(int(h[i:i+2],16) for i in range(0,len(h),2))
def _o(s):print('\x1d'+s+'\x1e',end='')
def _c(o,w=0):
 r=repr(o);_o(r+'#%x'%(sum(bytes(r,'utf8'))&65535))
 b=b'';n=0;m=_t.ticks_ms;t=m()
 while 1:
  d=_r()
  if d:
   b+=d;n+=len(d);t=m()
   if b[-1]==30:
    i=b.rfind(b'\x1d');j=b.rfind(b'#')
    try:
     k=0<=i<j and sum(b[i+1:j])&65535==int(b[j+1:-1],16)
    except ValueError:
     k=0
    if k:
     v=b[i+2:j];c=b[i+1]
     if c==110:return
     if c==105:return int(v)
     if c==120:raise MQTTException(int(v))
     if c==101:raise OSError(str(v,'utf8'))
     v=v.split(b',');return _h(v[0]),_h(v[1])
    b=b'';n=0;_o('!')
   elif n>=48:n=0;_o('+')
  else:
   e=_t.ticks_diff(m(),t)
   if b and e>500:b=b'';n=0;t=m();_o('!')
   elif e>10000 and not w:raise OSError('MQTT bridge: no answer (run %mqtt bridge in the notebook)')
# -- client --
class MQTTClient:
 def __init__(s,client_id,server,port=0,user=None,password=None,keepalive=0,ssl=False,ssl_params=None):
  s.a=(_b(client_id),_b(server),port,_b(user),_b(password),keepalive,bool(ssl));s.w=None;s.cb=None;s.h=id(s)&16777215
 def set_callback(s,f):s.cb=f
 def set_last_will(s,topic,msg,retain=False,qos=0):s.w=(_b(topic),_b(msg),retain,qos)
 def connect(s,clean_session=True):return _c(('C',s.h)+s.a+(s.w,clean_session))
 def disconnect(s):_c(('D',s.h))
 def ping(s):_c(('I',s.h))
 def publish(s,topic,msg,retain=False,qos=0):_c(('P',s.h,_b(topic),_b(msg),retain,qos))
 def subscribe(s,topic,qos=0):_c(('S',s.h,_b(topic),qos))
 def wait_msg(s):return s._m(1)
 def check_msg(s):return s._m(0)
 def _m(s,w):
  m=_c(('M',s.h,w),w)
  if m and s.cb:s.cb(m[0],m[1])
